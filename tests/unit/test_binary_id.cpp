// 20-byte ids carried as 20 code points U+0000..U+00FF ("latin1 in UTF-8").
#include <catch2/catch.hpp>

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/binary_id.hpp"
#include "protocol/webtorrent.hpp"

namespace {

using swarmcoord::protocol::binary_id;
using swarmcoord::protocol::binary_id_hash;
using swarmcoord::protocol::decode_binary_id;
using swarmcoord::protocol::encode_binary_id;
namespace wt = swarmcoord::protocol::webtorrent;

// Ids that together contain every byte value 0..255, each at several positions.
std::vector<binary_id> ids_covering_every_byte() {
  std::vector<binary_id> ids;
  for (int shift = 0; shift < 3; ++shift)
    for (int start = 0; start < 256; start += 20) {
      binary_id id;
      for (std::size_t i = 0; i < binary_id::size; ++i)
        id.bytes[i] = static_cast<std::uint8_t>((start + i * (shift + 1) + shift * 7) % 256);
      ids.push_back(id);
    }
  // And every byte as a whole id of that byte.
  for (int b = 0; b < 256; ++b) {
    binary_id id;
    id.bytes.fill(static_cast<std::uint8_t>(b));
    ids.push_back(id);
  }
  return ids;
}

binary_id filled(std::uint8_t b) {
  binary_id id;
  id.bytes.fill(b);
  return id;
}

std::string repeat(std::string_view piece, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += piece;
  return s;
}

// The UTF-8 encoding of one code point, written out independently of the code under test.
std::string utf8_of(unsigned cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

std::string announce_text(const std::string& info_hash_json, const std::string& peer_id_json) {
  return R"({"action":"announce","event":"started","info_hash":)" + info_hash_json +
         R"(,"peer_id":)" + peer_id_json + "}";
}

}  // namespace

TEST_CASE("every byte value round-trips through encode_binary_id and decode_binary_id") {
  std::set<int> seen;
  for (const auto& id : ids_covering_every_byte()) {
    for (auto b : id.bytes) seen.insert(b);
    auto text = encode_binary_id(id);
    auto decoded = decode_binary_id(text);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == id);
  }
  CHECK(seen.size() == 256);
}

TEST_CASE("encode_binary_id writes each byte as the UTF-8 of the code point with that value") {
  for (int b = 0; b < 256; ++b) {
    auto text = encode_binary_id(filled(static_cast<std::uint8_t>(b)));
    CHECK(text == repeat(utf8_of(static_cast<unsigned>(b)), binary_id::size));
  }
  // Spot checks against well-known encodings.
  CHECK(encode_binary_id(filled(0xE9)).substr(0, 2) == "\xC3\xA9");  // é
  CHECK(encode_binary_id(filled(0x80)).substr(0, 2) == "\xC2\x80");
  CHECK(encode_binary_id(filled(0xFF)).substr(0, 2) == "\xC3\xBF");  // ÿ
}

TEST_CASE("every byte value round-trips through nlohmann JSON dump and parse") {
  for (const auto& id : ids_covering_every_byte()) {
    for (bool ensure_ascii : {false, true}) {
      nlohmann::json j = {{"info_hash", encode_binary_id(id)}};
      auto text = j.dump(-1, ' ', ensure_ascii);
      auto back = nlohmann::json::parse(text);
      auto decoded = decode_binary_id(back["info_hash"].get<std::string>());
      REQUIRE(decoded.has_value());
      CHECK(*decoded == id);
    }
  }
}

TEST_CASE("every byte value round-trips through decode_client_message of an announce") {
  auto ids = ids_covering_every_byte();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto& info_hash = ids[i];
    const auto& peer_id = ids[(i + 1) % ids.size()];
    for (bool ensure_ascii : {false, true}) {
      nlohmann::json j = {{"action", "announce"},
                          {"event", "started"},
                          {"info_hash", encode_binary_id(info_hash)},
                          {"peer_id", encode_binary_id(peer_id)}};
      auto msg = wt::decode_client_message(j.dump(-1, ' ', ensure_ascii));
      REQUIRE(std::holds_alternative<wt::announce>(msg));
      const auto& a = std::get<wt::announce>(msg);
      CHECK(a.info_hash == info_hash);
      CHECK(a.peer_id == peer_id);
    }
  }
}

TEST_CASE("ids of the wrong length are rejected") {
  CHECK_FALSE(decode_binary_id(""));
  CHECK_FALSE(decode_binary_id(repeat("a", 19)));
  CHECK_FALSE(decode_binary_id(repeat("a", 21)));
  CHECK(decode_binary_id(repeat("a", 20)));
  CHECK_FALSE(decode_binary_id(repeat("a", 200)));

  // The length is counted in code points, not bytes.
  const std::string e_acute = "\xC3\xA9";
  CHECK(decode_binary_id(repeat(e_acute, 20)));
  CHECK_FALSE(decode_binary_id(repeat(e_acute, 19)));
  CHECK_FALSE(decode_binary_id(repeat(e_acute, 21)));
  CHECK_FALSE(decode_binary_id(repeat(e_acute, 10)));  // 20 bytes, but only 10 code points
  CHECK_FALSE(decode_binary_id(repeat("a", 19) + e_acute + "a"));

  // Embedded NUL bytes count as code points like any other.
  CHECK(decode_binary_id(std::string(20, '\0')));
  CHECK_FALSE(decode_binary_id(std::string(19, '\0')));
}

TEST_CASE("code points above U+00FF are rejected") {
  const std::string nineteen = repeat("a", 19);
  for (unsigned cp : {0x100u, 0x17Fu, 0x7FFu, 0x800u, 0x20ACu, 0xFFFDu, 0x1F600u, 0x10FFFFu}) {
    INFO("code point " << cp);
    CHECK_FALSE(decode_binary_id(nineteen + utf8_of(cp)));
    CHECK_FALSE(decode_binary_id(utf8_of(cp) + nineteen));
  }
  // The same through JSON escapes: "\u0100" and a surrogate pair for an emoji.
  auto msg = wt::decode_client_message(
      announce_text("\"\\u0100" + nineteen + "\"", "\"" + repeat("p", 20) + "\""));
  REQUIRE(std::holds_alternative<wt::request_error>(msg));
  CHECK(std::get<wt::request_error>(msg).message == "invalid info_hash");
  msg = wt::decode_client_message(
      announce_text("\"" + repeat("i", 20) + "\"", "\"\\ud83d\\ude00" + nineteen + "\""));
  REQUIRE(std::holds_alternative<wt::request_error>(msg));
  CHECK(std::get<wt::request_error>(msg).message == "invalid peer_id");
}

TEST_CASE("malformed UTF-8 and overlong forms are rejected") {
  const std::string nineteen = repeat("a", 19);
  const std::vector<std::string> bad = {
      "\x80",              // lone continuation byte
      "\xBF",              // lone continuation byte
      "\xC3",              // truncated two-byte sequence at the end
      "\xC0\x80",          // overlong NUL
      "\xC1\x81",          // overlong 'A'
      "\xC0\xA2",          // overlong '"'
      "\xE0\x80\x80",      // overlong three-byte NUL
      "\xE0\x81\x81",      // overlong three-byte 'A'
      "\xF0\x80\x80\x80",  // overlong four-byte NUL
      "\xF8\x88\x80\x80\x80",
      "\xFE",
      "\xFF",
      "\xED\xA0\x80",  // UTF-16 surrogate encoded in UTF-8
  };
  for (const auto& b : bad) {
    INFO("bytes of length " << b.size() << " starting with " << int(static_cast<unsigned char>(b[0])));
    CHECK_FALSE(decode_binary_id(nineteen + b));
    CHECK_FALSE(decode_binary_id(b + nineteen));
  }
  // A two-byte lead followed by a non-continuation byte.
  CHECK_FALSE(decode_binary_id(repeat("a", 18) + "\xC3" + "a"));
  CHECK_FALSE(decode_binary_id(repeat("a", 18) + "\xC3\xC3"));
  CHECK_FALSE(decode_binary_id("\xC3" + repeat("a", 20)));
}

TEST_CASE("any valid JSON escaping of the same bytes decodes to the same id") {
  // "A" vs "\u0041", "é" vs "\u00e9" / "\u00E9", "/" vs "\/", control bytes as \u00XX or \n.
  const std::string plain = "\"AAAAA\xC3\xA9/\\n\\\"\\\\xyzxyzxyzx\"";
  const std::string escaped =
      "\"\\u0041A\\u0041AA\\u00e9\\/\\u000a\\u0022\\u005cxyzxyzxyz\\u0078\"";
  const std::string upper = "\"\\u0041A\\u0041AA\\u00E9\\/\\u000A\\u0022\\u005Cxyzxyzxyz\\u0078\"";
  const std::string peer = "\"" + repeat("p", 20) + "\"";

  binary_id expected;
  const std::string raw = "AAAAA\xE9/\n\"\\xyzxyzxyzx";
  REQUIRE(raw.size() == 20);
  for (std::size_t i = 0; i < 20; ++i) expected.bytes[i] = static_cast<std::uint8_t>(raw[i]);

  for (const auto& text : {plain, escaped, upper}) {
    INFO(text);
    auto msg = wt::decode_client_message(announce_text(text, peer));
    REQUIRE(std::holds_alternative<wt::announce>(msg));
    CHECK(std::get<wt::announce>(msg).info_hash == expected);
  }
}

TEST_CASE("binary_id hex is lower-case, two digits per byte, in order") {
  binary_id id;
  for (std::size_t i = 0; i < binary_id::size; ++i) id.bytes[i] = static_cast<std::uint8_t>(i * 13 + 7);
  std::string expected;
  char buf[3];
  for (auto b : id.bytes) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    expected += buf;
  }
  CHECK(id.hex() == expected);
  CHECK(filled(0xAB).hex() == repeat("ab", 20));
  CHECK(filled(0x00).hex() == repeat("00", 20));
}

TEST_CASE("binary_id_hash agrees with equality and depends on every part of the id") {
  binary_id_hash h;
  auto ids = ids_covering_every_byte();
  for (const auto& id : ids) {
    binary_id copy = id;
    CHECK(h(copy) == h(id));
  }
  // Ids that differ in a single byte of the head, the middle or the tail hash differently.
  for (std::size_t pos : {0u, 7u, 8u, 15u, 16u, 19u}) {
    std::set<std::size_t> hashes;
    for (int v = 0; v < 256; ++v) {
      binary_id id = filled(0x41);
      id.bytes[pos] = static_cast<std::uint8_t>(v);
      hashes.insert(h(id));
    }
    INFO("position " << pos);
    CHECK(hashes.size() == 256);
  }
}
