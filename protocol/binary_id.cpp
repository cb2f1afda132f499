#include "protocol/binary_id.hpp"

namespace swarmcoord::protocol {

std::string binary_id::hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0x0f];
  }
  return out;
}

std::optional<binary_id> decode_binary_id(std::string_view utf8) {
  binary_id id;
  std::size_t n = 0;
  for (std::size_t i = 0; i < utf8.size();) {
    if (n == binary_id::size) return std::nullopt;
    const auto c = static_cast<std::uint8_t>(utf8[i]);
    if (c < 0x80) {
      id.bytes[n++] = c;
      i += 1;
    } else if ((c == 0xC2 || c == 0xC3) && i + 1 < utf8.size()) {
      // Only U+0080..U+00FF are allowed, which is exactly lead byte C2 or C3.
      const auto c2 = static_cast<std::uint8_t>(utf8[i + 1]);
      if ((c2 & 0xC0) != 0x80) return std::nullopt;
      id.bytes[n++] = static_cast<std::uint8_t>(((c & 0x1F) << 6) | (c2 & 0x3F));
      i += 2;
    } else {
      return std::nullopt;  // code point above U+00FF, overlong form, or truncated sequence
    }
  }
  if (n != binary_id::size) return std::nullopt;
  return id;
}

std::string encode_binary_id(const binary_id& id) {
  std::string out;
  out.reserve(binary_id::size * 2);
  for (auto b : id.bytes) {
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
    } else {
      out.push_back(static_cast<char>(0xC0 | (b >> 6)));
      out.push_back(static_cast<char>(0x80 | (b & 0x3F)));
    }
  }
  return out;
}

}  // namespace swarmcoord::protocol
