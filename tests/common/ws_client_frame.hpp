#pragma once
// A WebSocket frame as a client sends it (RFC 6455 5.2), for tests of the server side.
#include <cstdint>
#include <string>
#include <string_view>

namespace swarmcoord::test {

// first_byte: FIN, reserved bits and opcode. Masked with a fixed key unless told otherwise;
// the length in its shortest form unless `long_form`.
inline std::string client_frame(std::uint8_t first_byte, std::string_view payload, bool masked = true,
                                bool long_form = false) {
  std::string f;
  f.push_back(static_cast<char>(first_byte));
  const std::size_t n = payload.size();
  const char mask_bit = masked ? static_cast<char>(0x80) : 0;
  if (n < 126 && !long_form) {
    f.push_back(static_cast<char>(mask_bit | static_cast<char>(n)));
  } else if (n <= 0xFFFF) {
    f.push_back(static_cast<char>(mask_bit | 126));
    f.push_back(static_cast<char>(n >> 8));
    f.push_back(static_cast<char>(n & 0xFF));
  } else {
    f.push_back(static_cast<char>(mask_bit | 127));
    for (int i = 7; i >= 0; --i) f.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xFF));
  }
  const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
  if (masked) f.append(reinterpret_cast<const char*>(key), 4);
  for (std::size_t i = 0; i < n; ++i)
    f.push_back(masked ? static_cast<char>(payload[i] ^ key[i % 4]) : payload[i]);
  return f;
}

}  // namespace swarmcoord::test
