// loadgen: what every part shares: Asio names, the clock, and the small text tools that patch
// and pick apart messages without a JSON parser.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include <boost/asio.hpp>

namespace loadgen {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

inline const steady::time_point epoch = steady::now();
inline std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - epoch).count());
}

inline constexpr char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
inline constexpr char hexdigits[] = "0123456789abcdef";

inline void put_hex16(char* at, std::uint64_t v) {
  for (int i = 15; i >= 0; --i, v >>= 4) at[i] = hexdigits[v & 0xF];
}
inline std::optional<std::uint64_t> get_hex16(std::string_view s) {
  if (s.size() < 16) return std::nullopt;
  std::uint64_t v = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = s[static_cast<std::size_t>(i)];
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
    else return std::nullopt;
    v = (v << 4) | d;
  }
  return v;
}

inline std::size_t find(std::string_view hay, std::string_view needle, std::size_t from = 0) {
  if (from >= hay.size()) return std::string_view::npos;
  const void* p = ::memmem(hay.data() + from, hay.size() - from, needle.data(), needle.size());
  return p ? static_cast<std::size_t>(static_cast<const char*>(p) - hay.data()) : std::string_view::npos;
}

// The n characters of a JSON string value after `"key":"`, when they are followed by the
// closing quote (our ids are plain ASCII, so no escapes to undo).
inline std::optional<std::string_view> string_field(std::string_view msg, std::string_view key_quote, std::size_t n) {
  auto at = find(msg, key_quote);
  if (at == std::string_view::npos) return std::nullopt;
  at += key_quote.size();
  if (at + n >= msg.size() || msg[at + n] != '"') return std::nullopt;
  return msg.substr(at, n);
}

// The send time stamped into an SDP ("o=- <16 hex digits> ...").
inline constexpr std::string_view stamp_marker = "o=- ";
inline std::optional<std::uint64_t> find_stamp(std::string_view msg) {
  auto at = find(msg, stamp_marker);
  if (at == std::string_view::npos) return std::nullopt;
  return get_hex16(msg.substr(at + stamp_marker.size()));
}

}  // namespace loadgen
