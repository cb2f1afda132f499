#pragma once
// Readable 20-byte ids for tests: "I-000000000000000042" is info_hash 42, "P-…" a peer, "O-…"
// an offer; distinct per kind and number, printable in failure messages.
#include <cstdio>

#include "protocol/binary_id.hpp"

namespace swarmcoord::test {

inline protocol::binary_id make_id(char kind, int n) {
  char text[21];
  std::snprintf(text, sizeof text, "%c-%018d", kind, n);
  protocol::binary_id id;
  for (std::size_t i = 0; i < protocol::binary_id::size; ++i) id.bytes[i] = static_cast<std::uint8_t>(text[i]);
  return id;
}

}  // namespace swarmcoord::test
