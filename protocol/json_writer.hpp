#pragma once
// Small pieces both codecs use to write JSON by hand (faster than building a json value for
// every outgoing message). Pure; thread-safe.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/json_escape.hpp"

namespace swarmcoord::protocol {
namespace json_writer_detail {

// At s[at]: the length of the UTF-8 character that starts there, or, when none does, minus
// the length of its maximal invalid subpart: the bytes one U+FFFD stands for (the Unicode
// standard's recommended practice, which nlohmann's error_handler_t::replace and browsers'
// TextDecoder follow). Overlong forms, surrogates and code points above U+10FFFF are invalid.
inline int utf8_step(std::string_view s, std::size_t at) {
  const auto lead = static_cast<unsigned char>(s[at]);
  if (lead < 0x80) return 1;
  int length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the range of the byte after the lead
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;        // else overlong
    else if (lead == 0xED) high = 0x9F;  // else a surrogate
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;        // else overlong
    else if (lead == 0xF4) high = 0x8F;  // else above U+10FFFF
  } else {
    return -1;  // a continuation byte, or a lead no valid character has
  }
  for (int k = 1; k < length; ++k, low = 0x80, high = 0xBF) {
    const std::size_t i = at + static_cast<std::size_t>(k);
    if (i >= s.size()) return -k;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < low || c > high) return -k;
  }
  return length;
}

}  // namespace json_writer_detail

// A JSON string of valid UTF-8 text; invalid sequences become U+FFFD, so that a reply which
// quotes hostile input is still valid JSON. Valid text is checked and written in one go.
inline void append_json_string(std::string& out, std::string_view utf8) {
  using json_writer_detail::utf8_step;
  std::size_t valid = 0;
  for (int n; valid < utf8.size() && (n = utf8_step(utf8, valid)) > 0;) valid += static_cast<std::size_t>(n);
  if (valid == utf8.size()) return append_escaped(out, utf8);

  std::string repaired(utf8.substr(0, valid));
  for (std::size_t at = valid; at < utf8.size();) {
    const int n = utf8_step(utf8, at);
    const auto length = static_cast<std::size_t>(n > 0 ? n : -n);
    if (n > 0) repaired.append(utf8.substr(at, length));
    else repaired.append("\xEF\xBF\xBD");  // U+FFFD
    at += length;
  }
  append_escaped(out, repaired);
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

// The shortest text that reads back as the same double, kept a float (100.0, not 100); JSON
// has no infinities or NaN, so those are written as JSON.stringify writes them: null.
inline void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out.append("null");
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
  if (std::string_view(buf, end).find_first_of(".e") == std::string_view::npos) out.append(".0");
}

// Appends [a,b,…], each item written by write(out, item).
template <class Items, class Write>
void append_array(std::string& out, const Items& items, Write write) {
  out.push_back('[');
  bool first = true;
  for (const auto& item : items) {
    if (!first) out.push_back(',');
    first = false;
    write(out, item);
  }
  out.push_back(']');
}

// At most `limit` bytes of text, cut before a UTF-8 continuation byte, with "…" when cut.
inline std::string shorten_utf8(std::string_view text, std::size_t limit) {
  if (text.size() <= limit) return std::string(text);
  std::size_t cut = limit;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "…";
}

}  // namespace swarmcoord::protocol
