#pragma once
// Small pieces both codecs use to write JSON by hand (faster than building a json value for
// every outgoing message). Pure; thread-safe.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace swarmcoord::protocol {

// A JSON string of valid UTF-8 text; invalid sequences become U+FFFD, so that a reply which
// quotes hostile input is still valid JSON.
inline void append_json_string(std::string& out, std::string_view utf8) {
  out += nlohmann::json(utf8).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline void append_json_value(std::string& out, const nlohmann::json& v) {
  out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

inline void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// At most `limit` bytes of text, cut before a UTF-8 continuation byte, with "…" when cut.
inline std::string shorten_utf8(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) return std::string(text);
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "…";
}

}  // namespace swarmcoord::protocol
