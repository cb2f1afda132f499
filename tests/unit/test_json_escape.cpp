// append_escaped: JSON strings written a word at a time must equal the plain definition,
// wherever the escapes fall relative to the 8-byte words.
#include <catch2/catch.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "protocol/json_escape.hpp"

namespace {

using nlohmann::json;
using swarmcoord::protocol::append_escaped;

// The definition: JSON.stringify's escapes, everything else as is.
std::string reference(std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) out += std::string("\\u00") + hex[c >> 4] + hex[c & 0xF];
        else out += ch;
    }
  }
  return out + "\"";
}

std::string escaped(std::string_view bytes, std::string prefix = "") {
  append_escaped(prefix, bytes);
  return prefix;
}

}  // namespace

TEST_CASE("append_escaped writes JSON.stringify's escapes and keeps the rest") {
  CHECK(escaped("") == R"("")");
  CHECK(escaped("v=0\r\no=- 1\r\n") == R"("v=0\r\no=- 1\r\n")");
  CHECK(escaped("\"q\" \\ / \x7f") == "\"\\\"q\\\" \\\\ / \x7f\"");
  CHECK(escaped(std::string("\0\x01\x1f", 3)) == R"("\u0000\u0001\u001f")");
  CHECK(escaped("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") == "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"");
  CHECK(escaped("abc", "prefix:") == R"(prefix:"abc")");
}

TEST_CASE("append_escaped equals the definition for every byte at every offset and length") {
  for (int c = 0; c < 256; ++c) {
    for (std::size_t len = 1; len <= 24; ++len) {
      for (std::size_t at = 0; at < len; ++at) {
        std::string s(len, 'a');
        s[at] = static_cast<char>(c);
        if (at + 1 < len) s[at + 1] = static_cast<char>(c ^ 0x22);  // neighbours that may borrow
        INFO("byte " << c << " at " << at << " of " << len);
        REQUIRE(escaped(s, "x") == "x" + reference(s));
      }
    }
  }
}

TEST_CASE("append_escaped output of valid UTF-8 parses back to the same string") {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all += static_cast<char>(c);
  all += "\xC3\xA9\xE2\x80\xA8\xF0\x9F\x98\x80";
  for (std::size_t from = 0; from < 16; ++from) {
    const std::string s = all.substr(from) + all.substr(0, from);
    CHECK(json::parse(escaped(s)).get<std::string>() == s);
  }
}
