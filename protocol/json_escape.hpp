#pragma once
// Writing JSON strings fast. Most of what the WebTorrent side relays is SDP text, with an
// escape (\r\n) every few dozen bytes; written a character at a time, that was the largest
// cost of a relay. Pure; thread-safe.
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace swarmcoord::protocol {
namespace json_escape_detail {

// Length of each byte in a JSON string: 1 as is, 2 for a short escape (\" \\ \b \f \n \r \t,
// as JSON.stringify writes them), 6 for \u00XX (the other control characters).
inline constexpr auto escaped_length = [] {
  std::array<std::uint8_t, 256> len{};
  for (std::size_t c = 0; c < len.size(); ++c) len[c] = c < 0x20 ? 6 : 1;
  for (unsigned char c : {'"', '\\', '\b', '\f', '\n', '\r', '\t'}) len[c] = 2;
  return len;
}();

inline char* put_escaped(char* out, unsigned char c) {
  static constexpr char hex[] = "0123456789abcdef";
  if (escaped_length[c] == 1) {
    *out = static_cast<char>(c);
    return out + 1;
  }
  out[0] = '\\';
  switch (c) {
    case '"': out[1] = '"'; return out + 2;
    case '\\': out[1] = '\\'; return out + 2;
    case '\b': out[1] = 'b'; return out + 2;
    case '\f': out[1] = 'f'; return out + 2;
    case '\n': out[1] = 'n'; return out + 2;
    case '\r': out[1] = 'r'; return out + 2;
    case '\t': out[1] = 't'; return out + 2;
    default:
      std::memcpy(out + 1, "u00", 3);
      out[4] = hex[c >> 4];
      out[5] = hex[c & 0xF];
      return out + 6;
  }
}

// Strings are scanned 8 bytes at a time as little-endian words (byte i in bits 8i..8i+7);
// elsewhere a byte at a time.
inline constexpr bool by_words = std::endian::native == std::endian::little;

// The bytes of w that need an escape (below 0x20, '"', '\\'), as their high bits. Exact:
// (b & 0x7F) + (0x80 - n) never carries into the next byte, and has its high bit clear
// exactly when b & 0x7F < n; b's own high bit rules out b >= 0x80.
inline std::uint64_t escape_flags(std::uint64_t w) {
  constexpr std::uint64_t ones = 0x0101010101010101, low7 = 0x7F * ones;
  auto below = [](std::uint64_t x, std::uint64_t n) { return ~(((x & low7) + (0x80 - n) * ones) | x | low7); };
  return below(w, 0x20) | below(w ^ ('"' * ones), 1) | below(w ^ ('\\' * ones), 1);
}

}  // namespace json_escape_detail

// Appends `bytes` as a JSON string, quotes included. Bytes >= 0x80 pass through unchanged:
// valid UTF-8 stays valid; callers with other bytes (the WebTorrent binary ids, already
// latin1-in-UTF-8) must have made them UTF-8 first. The size is worked out first, then the
// string written in place, plain bytes a word at a time.
inline void append_escaped(std::string& out, std::string_view bytes) {
  using namespace json_escape_detail;
  const char* const s = bytes.data();
  const std::size_t n = bytes.size(), whole = by_words ? n & ~std::size_t{7} : 0;
  auto word = [s](std::size_t i) {
    std::uint64_t w;
    std::memcpy(&w, s + i, 8);
    return w;
  };
  std::size_t size = n + 2;
  for (std::size_t i = 0; i < whole; i += 8)
    for (auto f = escape_flags(word(i)); f != 0; f &= f - 1)
      size += escaped_length[static_cast<unsigned char>(s[i + std::countr_zero(f) / 8])] - 1u;
  for (std::size_t i = whole; i < n; ++i) size += escaped_length[static_cast<unsigned char>(s[i])] - 1u;

  const std::size_t at = out.size();
  out.resize(at + size + 8);  // slack: plain bytes are stored a whole word at a time
  char* o = out.data() + at;
  *o++ = '"';
  for (std::size_t i = 0; i < whole; i += 8) {
    const std::uint64_t w = word(i);
    std::size_t done = 0;  // bytes of w written
    auto put_plain = [&](std::size_t upto) {  // bytes done..upto-1, none needing an escape
      const std::uint64_t rest = done < 8 ? w >> (8 * done) : 0;
      std::memcpy(o, &rest, 8);
      o += upto - done;
    };
    for (auto f = escape_flags(w); f != 0; f &= f - 1) {
      const auto k = static_cast<std::size_t>(std::countr_zero(f)) / 8;
      put_plain(k);
      o = put_escaped(o, static_cast<unsigned char>(s[i + k]));
      done = k + 1;
    }
    put_plain(8);
  }
  for (std::size_t i = whole; i < n; ++i) o = put_escaped(o, static_cast<unsigned char>(s[i]));
  *o = '"';
  out.resize(at + size);
}

}  // namespace swarmcoord::protocol
