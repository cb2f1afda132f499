// append_escaped: JSON strings written a word at a time must equal the plain definition,
// wherever the escapes fall relative to the 8-byte words. append_json_string: the same for
// valid UTF-8, and invalid sequences replaced by U+FFFD exactly as nlohmann replaces them.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "protocol/json_escape.hpp"
#include "protocol/json_writer.hpp"

namespace {

using nlohmann::json;
using swarmcoord::protocol::append_escaped;
using swarmcoord::protocol::append_json_string;

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

namespace {

std::string json_string(std::string_view bytes) {
  std::string out;
  append_json_string(out, bytes);
  return out;
}

}  // namespace

TEST_CASE("append_json_string writes valid UTF-8 as append_escaped does") {
  for (const std::string& s : {std::string(""), std::string("v=0\r\n\"q\"\\\x01\x7f"), std::string("\0", 1),
                               std::string("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xEF\xBF\xBD\xF4\x8F\xBF\xBF\xED\x9F\xBF")})
    CHECK(json_string(s) == escaped(s));
}

TEST_CASE("append_json_string replaces each maximal invalid subpart with one U+FFFD") {
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(json_string("\xff") == '"' + fffd + '"');
  CHECK(json_string("a\x80" "b") == "\"a" + fffd + "b\"");
  CHECK(json_string("a\xC3") == "\"a" + fffd + '"');                   // cut short at the end
  CHECK(json_string("\xF0\x9F\x98!") == '"' + fffd + "!\"");           // one for the three bytes
  CHECK(json_string("\xC3\x28") == '"' + fffd + "(\"");                 // the byte that broke it is read again
  CHECK(json_string("\xC0\xAF") == '"' + fffd + fffd + '"');            // overlong: no valid lead
  CHECK(json_string("\xE0\x80\xAF") == '"' + fffd + fffd + fffd + '"');  // overlong
  CHECK(json_string("\xED\xA0\x80") == '"' + fffd + fffd + fffd + '"');  // a surrogate
  CHECK(json_string("\xF4\x90\x80\x80") == '"' + fffd + fffd + fffd + fffd + '"');  // above U+10FFFF
  CHECK(json_string("\xE2\x82\"\n") == '"' + fffd + "\\\"\\n\"");     // escapes still apply
}

TEST_CASE("append_json_string equals nlohmann's dump with error_handler_t::replace on any bytes") {
  // Bytes that start, continue and break UTF-8 sequences, and some that need escapes.
  const unsigned char pool[] = {0x00, 0x1f, '"', '\\', 'a', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1,
                                0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff};
  std::mt19937 rng(77);
  for (int round = 0; round < 200000; ++round) {
    std::string s(rng() % 12, '\0');
    for (auto& c : s) c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : pool[rng() % std::size(pool)]);
    const std::string expected = json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    INFO("round " << round);
    REQUIRE(json_string(s) == expected);
  }
}
