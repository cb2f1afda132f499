// Swarm URL normalization (protocol/swarm_url.cpp): a key is at most the length limit, is an
// http(s) URL, and is its own key again. A key that a second pass refused would be a swarm
// its clients could not name when they rejoin.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "protocol/swarm_url.hpp"

namespace proto = swarmcoord::protocol;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view url(reinterpret_cast<const char*>(data), size);
  const auto key = proto::normalize_swarm_url(url);
  if (!key) return 0;
  FUZZ_REQUIRE_MSG(key->size() <= proto::max_swarm_url_bytes, *key);
  FUZZ_REQUIRE_MSG(key->starts_with("http://") || key->starts_with("https://"), *key);
  FUZZ_REQUIRE_MSG(key->find('#') == std::string::npos, *key);
  const auto again = proto::normalize_swarm_url(*key);
  FUZZ_REQUIRE_MSG(again.has_value(), "refused on the second pass: " + *key);
  FUZZ_REQUIRE_MSG(*again == *key, *key + " -> " + *again);
  return 0;
}
