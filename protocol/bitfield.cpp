#include "protocol/bitfield.hpp"

#include <array>

namespace swarmcoord::protocol {

bitfield::bitfield(std::uint32_t size, bool all) : words_((size + 63) / 64, 0), size_(size) {
  if (!all) return;
  for (std::uint32_t i = 0; i < size; ++i) set(i);
}

std::optional<bitfield> bitfield::from_bytes(std::string_view bytes, std::uint32_t size) {
  if (bytes.size() != (static_cast<std::size_t>(size) + 7) / 8) return std::nullopt;
  bitfield f(size);
  for (std::size_t byte = 0; byte < bytes.size(); ++byte) {
    const auto b = static_cast<std::uint8_t>(bytes[byte]);
    for (unsigned bit = 0; bit < 8; ++bit) {
      if (!(b & (0x80u >> bit))) continue;
      const std::size_t index = byte * 8 + bit;
      if (index >= size) return std::nullopt;  // padding bits must be zero
      f.set(static_cast<std::uint32_t>(index));
    }
  }
  return f;
}

std::string bitfield::to_bytes() const {
  std::string out((static_cast<std::size_t>(size_) + 7) / 8, '\0');
  for_each_set([&](std::uint32_t i) { out[i / 8] = static_cast<char>(out[i / 8] | (0x80u >> (i % 8))); });
  return out;
}

namespace {
constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::int8_t, 256> decode_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
  return t;
}
constexpr auto table = decode_table();
}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t(std::uint8_t(bytes[i])) << 16) |
                            (std::uint32_t(std::uint8_t(bytes[i + 1])) << 8) | std::uint8_t(bytes[i + 2]);
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  if (const auto rest = bytes.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= std::uint32_t(std::uint8_t(bytes[i + 1])) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = text[i + k];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      v[k] = table[static_cast<unsigned char>(c)];
      if (v[k] < 0) return std::nullopt;
    }
    const std::uint32_t n = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) |
                            (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
    // Canonical form only: the bits a padded quantum drops must be zero.
    if ((pad == 1 && (n & 0xFF)) || (pad == 2 && (n & 0xFFFF))) return std::nullopt;
  }
  return out;
}

}  // namespace swarmcoord::protocol
