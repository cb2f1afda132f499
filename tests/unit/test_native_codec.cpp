// Native protocol v1 codec: client messages decoded (with every error decoding can produce),
// server messages encoded and read back field by field, hostile input never throws.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "native_test_helpers.hpp"
#include "protocol/bitfield.hpp"
#include "protocol/native.hpp"

namespace {

using nlohmann::json;
using namespace swarmcoord::test::native;
using swarmcoord::protocol::base64_encode;

const char* url = "HTTPS://Cdn.Example:443/v.mp4#t=1";
const char* key = "https://cdn.example/v.mp4";

json join_msg() { return {{"type", "join"}, {"swarm", url}, {"size", 1000000}, {"block_size", 65536}}; }

}  // namespace

// ------------------------------------------------------------------ client messages

TEST_CASE("native decode: hello", "[native]") {
  auto h = expect<nv::hello>(decode(R"({"type":"hello","v":1,"native":true,"max_neighbors":5})"));
  CHECK(h.native);
  REQUIRE(h.max_neighbors);
  CHECK(*h.max_neighbors == 5);

  auto bare = expect<nv::hello>(decode(R"({"type":"hello"})"));
  CHECK_FALSE(bare.native);
  CHECK_FALSE(bare.max_neighbors);

  auto off = expect<nv::hello>(decode(R"({"type":"hello","v":1,"native":false,"max_neighbors":null})"));
  CHECK_FALSE(off.native);
  CHECK_FALSE(off.max_neighbors);

  CHECK(*expect<nv::hello>(decode(R"({"type":"hello","max_neighbors":1})")).max_neighbors == 1);
  CHECK(*expect<nv::hello>(decode(R"({"type":"hello","max_neighbors":1000})")).max_neighbors == 1000);
  // Unknown fields are ignored.
  expect<nv::hello>(decode(R"({"type":"hello","v":1,"future":{"x":[1,2]}})"));

  SECTION("errors") {
    for (const char* v : {"2", "0", "-1", "\"1\"", "1.5", "true", "[1]", "18446744073709551617", "18446744073709551615"}) {
      INFO("v " << v);
      expect_error(decode(std::string(R"({"type":"hello","v":)") + v + "}"), nv::error_code::unsupported_version, "hello");
    }
    for (const char* n : {"\"yes\"", "1", "0", "\"true\"", "{}"}) {
      INFO("native " << n);
      expect_error(decode(std::string(R"({"type":"hello","native":)") + n + "}"), nv::error_code::invalid_field, "hello");
    }
    for (const char* n : {"0", "1001", "-1", "\"5\"", "5.5", "true", "[5]", "4294967297", "18446744073709551615"}) {
      INFO("max_neighbors " << n);
      expect_error(decode(std::string(R"({"type":"hello","max_neighbors":)") + n + "}"), nv::error_code::invalid_field,
                   "hello");
    }
  }
}

TEST_CASE("native decode: join", "[native]") {
  SECTION("without have") {
    auto j = expect<nv::join>(decode(join_msg()));
    CHECK(j.swarm == key);
    CHECK(j.size == 1000000);
    CHECK(j.block_size == 65536);
    CHECK(j.have == nv::join::holding::none);
    CHECK(j.bitfield_bytes.empty());
    auto with_null = join_msg();
    with_null["have"] = nullptr;
    CHECK(expect<nv::join>(decode(with_null)).have == nv::join::holding::none);
  }
  SECTION("have all") {
    auto m = join_msg();
    m["have"] = "all";
    auto j = expect<nv::join>(decode(m));
    CHECK(j.have == nv::join::holding::all);
  }
  SECTION("have a bitfield: decoded bytes, length checked later by the swarm") {
    for (const std::string& bytes : {std::string("\xff\x00\x80", 3), std::string(""), std::string(1000, '\x55')}) {
      auto m = join_msg();
      m["have"] = base64_encode(bytes);
      auto j = expect<nv::join>(decode(m));
      CHECK(j.have == nv::join::holding::some);
      CHECK(j.bitfield_bytes == bytes);
    }
  }
  SECTION("numeric bounds") {
    auto m = join_msg();
    m["size"] = 1;
    m["block_size"] = 1024;
    auto j = expect<nv::join>(decode(m));
    CHECK(j.size == 1);
    CHECK(j.block_size == 1024);
    m["size"] = 1ull << 53;
    m["block_size"] = 64u << 20;
    j = expect<nv::join>(decode(m));
    CHECK(j.size == 1ull << 53);
    CHECK(j.block_size == 64u << 20);
  }
  SECTION("errors") {
    auto with = [](const char* field, json v) {
      auto m = join_msg();
      m[field] = std::move(v);
      return m;
    };
    auto without = [](const char* field) {
      auto m = join_msg();
      m.erase(field);
      return m;
    };
    const nv::error_code invalid = nv::error_code::invalid_field;
    expect_error(decode(without("swarm")), invalid, "join");
    expect_error(decode(with("swarm", 5)), invalid, "join");
    expect_error(decode(with("swarm", json::array({url}))), invalid, "join");
    expect_error(decode(with("swarm", "ftp://cdn.example/v.mp4")), nv::error_code::bad_url, "join");
    expect_error(decode(with("swarm", "https://user@cdn.example/v.mp4")), nv::error_code::bad_url, "join");
    expect_error(decode(with("swarm", "")), nv::error_code::bad_url, "join");
    expect_error(decode(without("size")), invalid, "join");
    expect_error(decode(without("block_size")), invalid, "join");
    for (json bad : {json(0), json(-1), json(1.5), json("100"), json((1ull << 53) + 1), json(true), json::object()}) {
      INFO("size " << bad.dump());
      expect_error(decode(with("size", bad)), invalid, "join");
    }
    for (json bad : {json(0), json(1023), json((64u << 20) + 1), json(-65536), json(65536.5), json("65536"),
                     json(1ull << 40)}) {
      INFO("block_size " << bad.dump());
      expect_error(decode(with("block_size", bad)), invalid, "join");
    }
    for (json bad : {json(1), json(true), json::array(), json::object({{"a", 1}})}) {
      INFO("have " << bad.dump());
      expect_error(decode(with("have", bad)), invalid, "join");
    }
    for (const char* bad : {"ALL", "All", "Zg", "Zg=", "Zh==", "Zm9-", "Zm9v Zm9v", "=", "all=="}) {
      INFO("have " << bad);
      expect_error(decode(with("have", bad)), nv::error_code::bad_base64, "join");
    }
  }
}

TEST_CASE("native decode: have", "[native]") {
  auto h = expect<nv::have>(decode(R"({"type":"have","swarm":"https://CDN.example/v.mp4","blocks":[0,7,4294967295,7]})"));
  CHECK(h.swarm == key);
  CHECK(h.blocks == std::vector<std::uint32_t>{0, 7, 4294967295u, 7});
  CHECK(expect<nv::have>(decode(R"({"type":"have","swarm":"https://cdn.example/v.mp4","blocks":[]})")).blocks.empty());

  const auto invalid = nv::error_code::invalid_field;
  for (const char* blocks : {"null", "5", "\"1,2\"", "{}", "[-1]", "[1,-1]", "[4294967296]", "[1.5]", "[1.0]", "[\"1\"]",
                             "[[1]]", "[null]", "[true]", "[18446744073709551615]"}) {
    INFO("blocks " << blocks);
    expect_error(decode(std::string(R"({"type":"have","swarm":"https://cdn.example/v.mp4","blocks":)") + blocks + "}"),
                 invalid, "have");
  }
  expect_error(decode(R"({"type":"have","blocks":[1]})"), invalid, "have");
  expect_error(decode(R"({"type":"have","swarm":"mailto:x@y","blocks":[1]})"), nv::error_code::bad_url, "have");

  SECTION("at most max_have_blocks indices in one message") {
    nv::decode_limits small;
    small.max_have_blocks = 3;
    json m = {{"type", "have"}, {"swarm", key}, {"blocks", {1, 2, 3}}};
    CHECK(expect<nv::have>(decode(m, small)).blocks.size() == 3);
    m["blocks"].push_back(4);
    expect_error(decode(m, small), invalid, "have");
    // The default allows 65536.
    json big = {{"type", "have"}, {"swarm", key}, {"blocks", json::array()}};
    for (std::uint32_t i = 0; i < 65536; ++i) big["blocks"].push_back(i);
    CHECK(expect<nv::have>(decode(big)).blocks.size() == 65536);
    big["blocks"].push_back(0);
    expect_error(decode(big), invalid, "have");
  }
}

TEST_CASE("native decode: leave", "[native]") {
  CHECK(expect<nv::leave>(decode(R"({"type":"leave","swarm":"https://cdn.example:443/v.mp4"})")).swarm == key);
  expect_error(decode(R"({"type":"leave"})"), nv::error_code::invalid_field, "leave");
  expect_error(decode(R"({"type":"leave","swarm":1})"), nv::error_code::invalid_field, "leave");
  expect_error(decode(R"({"type":"leave","swarm":"nope"})"), nv::error_code::bad_url, "leave");
}

TEST_CASE("native decode: signal", "[native]") {
  SECTION("offer, answer, candidate and anything else") {
    const std::pair<json, std::string> cases[] = {
        {json{{"type", "offer"}, {"sdp", "v=0\r\n..."}}, "offer"},
        {json{{"type", "answer"}, {"sdp", "v=0"}}, "answer"},
        {json{{"type", "candidate"}, {"candidate", {{"candidate", "a=..."}, {"sdpMid", "0"}}}}, "candidate"},
        {json{{"type", "renegotiate"}}, "other"},
        {json{{"type", 5}}, "other"},
        {json{{"sdp", "x"}}, "other"},
        {json("just a string"), "other"},
        {json::array({1, 2, 3}), "other"},
        {json(42), "other"},
        {json(false), "other"},
    };
    for (const auto& [data, kind] : cases) {
      INFO(data.dump());
      json m = {{"type", "signal"}, {"swarm", url}, {"to", "00000000deadbeef"}, {"data", data}};
      auto s = expect<nv::signal>(decode(m));
      CHECK(s.swarm == key);
      CHECK(s.to == 0xdeadbeefull);
      CHECK(s.kind == kind);
      CHECK(json::parse(s.data.text) == data);
      CHECK(s.data.text.find('\n') == std::string::npos);  // compact
    }
  }
  SECTION("peer ids: 16 lower-case hex digits") {
    auto s = expect<nv::signal>(decode(R"({"type":"signal","swarm":"https://cdn.example/v.mp4","to":"ffffffffffffffff","data":{}})"));
    CHECK(s.to == ~0ull);
    for (const char* to : {"00000000DEADBEEF", "deadbeef", "0000000000000000a", "000000000000000g", "", " 00000000deadbeef",
                           "-000000000000001", "0x00000000deadbe"}) {
      INFO("to " << to);
      json m = {{"type", "signal"}, {"swarm", key}, {"to", to}, {"data", json::object()}};
      expect_error(decode(m), nv::error_code::peer_not_found, "signal");
    }
    for (json to : {json(3735928559), json::array(), json(nullptr)}) {
      INFO("to " << to.dump());
      json m = {{"type", "signal"}, {"swarm", key}, {"to", to}, {"data", json::object()}};
      expect_error(decode(m), nv::error_code::invalid_field, "signal");
    }
  }
  SECTION("data is required and bounded") {
    expect_error(decode(json{{"type", "signal"}, {"swarm", key}, {"to", "0000000000000001"}}),
                 nv::error_code::invalid_field, "signal");
    // A JSON string of n characters is n + 2 bytes of compact JSON.
    nv::decode_limits l;
    l.max_signal_bytes = 100;
    json m = {{"type", "signal"}, {"swarm", key}, {"to", "0000000000000001"}, {"data", std::string(98, 'x')}};
    CHECK(expect<nv::signal>(decode(m, l)).data.text.size() == 100);
    m["data"] = std::string(99, 'x');
    expect_error(decode(m, l), nv::error_code::signal_too_big, "signal");
    // The default is 16 KiB of data.
    m["data"] = {{"type", "offer"}, {"sdp", std::string(16 * 1024 - 25, 's')}};
    REQUIRE(m["data"].dump().size() == 16 * 1024);
    CHECK(expect<nv::signal>(decode(m)).data.text.size() == 16 * 1024);
    m["data"]["sdp"] = std::string(16 * 1024 - 24, 's');
    expect_error(decode(m), nv::error_code::signal_too_big, "signal");
    // The limit applies to the compact form: whitespace in the frame costs nothing.
    std::string spaced = R"({"type":"signal","swarm":"https://cdn.example/v.mp4","to":"0000000000000001","data":{  "a"  :  [ 1 , 2 ]  }})";
    CHECK(expect<nv::signal>(decode(spaced)).data.text == R"({"a":[1,2]})");
  }
  SECTION("errors in swarm") {
    expect_error(decode(R"({"type":"signal","to":"0000000000000001","data":{}})"), nv::error_code::invalid_field, "signal");
    expect_error(decode(R"({"type":"signal","swarm":"x","to":"0000000000000001","data":{}})"), nv::error_code::bad_url,
                 "signal");
  }
}

TEST_CASE("native decode: report", "[native]") {
  auto r = expect<nv::report>(
      decode(R"({"type":"report","swarm":"https://cdn.example/v.mp4","http_bytes":1,"p2p_bytes":0,"uploaded_bytes":1125899906842624})"));
  CHECK(r.swarm == key);
  CHECK(r.http_bytes == 1);
  CHECK(r.p2p_bytes == 0);
  CHECK(r.uploaded_bytes == 1ull << 50);
  for (const char* field : {"http_bytes", "p2p_bytes", "uploaded_bytes"}) {
    for (json bad : {json(-1), json((1ull << 50) + 1), json(1.5), json("1"), json(nullptr), json::array()}) {
      json m = {{"type", "report"}, {"swarm", key}, {"http_bytes", 1}, {"p2p_bytes", 2}, {"uploaded_bytes", 3}};
      m[field] = bad;
      INFO(field << " " << bad.dump());
      expect_error(decode(m), nv::error_code::invalid_field, "report");
    }
    json m = {{"type", "report"}, {"swarm", key}, {"http_bytes", 1}, {"p2p_bytes", 2}, {"uploaded_bytes", 3}};
    m.erase(field);
    expect_error(decode(m), nv::error_code::invalid_field, "report");
  }
}

TEST_CASE("native decode: report.bad_peers", "[native]") {
  auto r = expect<nv::report>(decode(
      R"({"type":"report","swarm":"https://cdn.example/v.mp4","http_bytes":0,"p2p_bytes":0,"uploaded_bytes":0,"bad_peers":["00000000000000ff","0123456789abcdef"]})"));
  REQUIRE(r.bad_peers.size() == 2);
  CHECK(r.bad_peers[0] == 0xff);
  CHECK(r.bad_peers[1] == 0x0123456789abcdefull);
  CHECK(expect<nv::report>(decode(nv::encode_report(r))).bad_peers == r.bad_peers);
  json too_many = json::array();
  for (int i = 0; i <= static_cast<int>(nv::max_bad_peers_per_report); ++i) too_many.push_back("00000000000000ff");
  for (json bad : {json("00000000000000ff"), json::array({1}), json::array({"xyz"}), json::array({"00000000000000FF0"}), too_many}) {
    json m = {{"type", "report"}, {"swarm", key}, {"http_bytes", 1}, {"p2p_bytes", 2}, {"uploaded_bytes", 3}, {"bad_peers", bad}};
    INFO(bad.dump());
    expect_error(decode(m), nv::error_code::invalid_field, "report");
  }
}

TEST_CASE("native decode: frame-level errors", "[native]") {
  for (const char* bad : {"", "{", "not json", "{\"type\":\"hello\"", "{'type':'hello'}", "{\"type\":\"hello\"}}",
                          "\xff\xfe", "{\"type\":\"hel\xc3\x28lo\"}"}) {
    INFO(bad);
    expect_error(decode(std::string(bad)), nv::error_code::bad_json, "");
  }
  expect_error(decode(std::string(1000, '[') + std::string(1000, ']')), nv::error_code::bad_json, "");
  for (const char* bad : {"[]", "[{\"type\":\"hello\"}]", "\"hello\"", "42", "null", "true"}) {
    INFO(bad);
    expect_error(decode(std::string(bad)), nv::error_code::invalid_field, "");
  }
  for (const char* bad : {"{}", R"({"type":5})", R"({"type":null})", R"({"type":["hello"]})", R"({"Type":"hello"})"}) {
    INFO(bad);
    expect_error(decode(std::string(bad)), nv::error_code::invalid_field, "");
  }
  // ref names the unknown type, so that a client sees which of its messages was refused.
  for (const char* name : {"Hello", "announce", "", "welcome", "hello "}) {
    INFO(name);
    expect_error(decode(json{{"type", name}}), nv::error_code::unknown_type, name);
  }
  // A huge type name is echoed neither whole in the message nor in ref.
  auto e = expect_error(decode(json{{"type", std::string(10000, 't')}}), nv::error_code::unknown_type,
                        std::string(32, 't') + "\xe2\x80\xa6");
  CHECK(e.message.size() < 200);
}

TEST_CASE("native decode: every error code decoding can produce is produced", "[native]") {
  // The codes that belong to later stages (session and swarm) are never produced by decoding.
  const std::string frames[] = {
      "{",
      R"({"type":"nope"})",
      R"({"type":"hello","native":1})",
      R"({"type":"hello","v":2})",
      R"({"type":"join","swarm":"gopher://x/","size":1,"block_size":1024})",
      R"({"type":"join","swarm":"https://x/","size":1,"block_size":1024,"have":"***"})",
      R"({"type":"signal","swarm":"https://x/","to":"bob","data":{}})",
      R"({"type":"signal","swarm":"https://x/","to":"0000000000000001","data":")" + std::string(20000, 'x') + "\"}",
  };
  std::set<std::string> seen;
  for (const auto& f : frames) {
    auto m = decode(f);
    REQUIRE(std::holds_alternative<nv::error>(m));
    seen.insert(std::string(nv::to_string(std::get<nv::error>(m).code)));
  }
  CHECK(seen == std::set<std::string>{"bad_json", "unknown_type", "invalid_field", "unsupported_version", "bad_url",
                                      "bad_base64", "peer_not_found", "signal_too_big"});
}

TEST_CASE("native: error code and locality names are the wire contract", "[native]") {
  const char* names[] = {"bad_json",      "unknown_type",   "invalid_field",      "unsupported_version",
                         "hello_required", "already_hello",  "bad_url",            "bad_base64",
                         "bad_bitfield",   "block_out_of_range", "too_many_swarms", "too_many_blocks",
                         "swarm_mismatch", "not_joined",     "peer_not_found",     "signal_too_big",
                         "not_linked", "not_allowed", "server_full"};
  REQUIRE(std::size(names) == nv::error_code_count);
  for (std::size_t i = 0; i < nv::error_code_count; ++i)
    CHECK(nv::to_string(static_cast<nv::error_code>(i)) == names[i]);
  const char* places[] = {"site", "subnet", "asn", "country", "remote"};
  REQUIRE(std::size(places) == nv::locality_count);
  for (std::size_t i = 0; i < nv::locality_count; ++i) CHECK(nv::to_string(static_cast<nv::locality>(i)) == places[i]);
}

TEST_CASE("native: peer ids format as 16 lower-case hex digits and parse back", "[native]") {
  CHECK(nv::format_peer_id(0) == "0000000000000000");
  CHECK(nv::format_peer_id(0xdeadbeef) == "00000000deadbeef");
  CHECK(nv::format_peer_id(~0ull) == "ffffffffffffffff");
  CHECK(nv::format_peer_id(0x0123456789abcdefull) == "0123456789abcdef");
  std::mt19937_64 rng(5);
  for (int i = 0; i < 1000; ++i) {
    const auto id = rng();
    const auto text = nv::format_peer_id(id);
    CHECK(text.size() == 16);
    CHECK(text.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(nv::parse_peer_id(text) == id);
  }
}

// ------------------------------------------------------------------ server messages

TEST_CASE("native encode: welcome", "[native]") {
  nv::welcome w;
  w.id = 0x00ab00cd00ef0012ull;
  w.max_neighbors = 8;
  w.heartbeat_s = 30;
  w.ice_servers = {R"([{"urls":"stun:stun.example.org:3478"}])"};
  const json j = json::parse(nv::encode(w));
  CHECK(j.size() == 5);
  CHECK(j.at("type") == "welcome");
  CHECK(j.at("peer_id") == "00ab00cd00ef0012");
  CHECK(j.at("max_neighbors") == 8);
  CHECK(j.at("heartbeat_s") == 30);
  CHECK(j.at("ice_servers") == json::parse(w.ice_servers.text));

  nv::welcome empty;
  const json e = json::parse(nv::encode(empty));
  CHECK(e.at("ice_servers") == json::array());
  CHECK(e.at("peer_id") == "0000000000000000");
}

TEST_CASE("native encode: joined", "[native]") {
  for (const std::string& swarm : {std::string(key), std::string("https://a.example/\"quoted\"\\back?x=\xc3\xa9"),
                                  std::string("https://a.example/\x01")}) {
    nv::joined m{swarm, 4096, 4294967295u};
    const json j = json::parse(nv::encode(m));
    CHECK(j.size() == 4);
    CHECK(j.at("type") == "joined");
    CHECK(j.at("swarm") == swarm);
    CHECK(j.at("blocks") == 4096);
    CHECK(j.at("peers") == 4294967295u);
  }
}

TEST_CASE("native encode: neighbors", "[native]") {
  nv::neighbors n;
  n.swarm = key;
  const nv::locality places[] = {nv::locality::site, nv::locality::subnet, nv::locality::asn, nv::locality::country,
                                 nv::locality::remote};
  for (std::uint64_t i = 0; i < 5; ++i)
    n.add.push_back({0x1000000000000000ull * i + i, i % 2 == 0, places[i], static_cast<std::uint32_t>(i * 1000)});
  n.remove = {1, 0xffffffffffffffffull, 0};
  const json j = json::parse(nv::encode(n));
  CHECK(j.size() == 4);
  CHECK(j.at("type") == "neighbors");
  CHECK(j.at("swarm") == key);
  REQUIRE(j.at("add").is_array());
  REQUIRE(j.at("add").size() == 5);
  const char* names[] = {"site", "subnet", "asn", "country", "remote"};
  for (std::size_t i = 0; i < 5; ++i) {
    const auto& a = j["add"][i];
    CHECK(a.size() == 4);
    CHECK(a.at("peer_id") == nv::format_peer_id(n.add[i].id));
    CHECK(a.at("initiator").is_boolean());
    CHECK(a.at("initiator") == (i % 2 == 0));
    CHECK(a.at("locality") == names[i]);
    CHECK(a.at("have") == i * 1000);
  }
  CHECK(j.at("remove") == json::array({"0000000000000001", "ffffffffffffffff", "0000000000000000"}));

  nv::neighbors none;
  none.swarm = key;
  const json e = json::parse(nv::encode(none));
  CHECK(e.at("add") == json::array());
  CHECK(e.at("remove") == json::array());
}

TEST_CASE("native encode: signal relay embeds the data as JSON", "[native]") {
  const json data = {{"type", "offer"}, {"sdp", "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\"q\"\\"}, {"n", {1, 2.5, nullptr}}};
  nv::signal_relay s{key, 0x42, {data.dump()}};
  const json j = json::parse(nv::encode(s));
  CHECK(j.size() == 4);
  CHECK(j.at("type") == "signal");
  CHECK(j.at("swarm") == key);
  CHECK(j.at("from") == "0000000000000042");
  CHECK(j.at("data") == data);

  // What the decoder produced from a client's signal is relayed intact.
  json in = {{"type", "signal"}, {"swarm", key}, {"to", "0000000000000007"}, {"data", data}};
  auto decoded = expect<nv::signal>(decode(in));
  const json out = json::parse(nv::encode(nv::signal_relay{decoded.swarm, 9, decoded.data}));
  CHECK(out.at("data") == data);
}

TEST_CASE("native encode: error", "[native]") {
  for (std::size_t i = 0; i < nv::error_code_count; ++i) {
    const auto code = static_cast<nv::error_code>(i);
    nv::error e{code, "bad \"thing\"\n\ttab \xc3\xa9", i % 2 ? "join" : ""};
    const json j = json::parse(nv::encode(e));
    CHECK(j.at("type") == "error");
    CHECK(j.at("code") == std::string(nv::to_string(code)));
    CHECK(j.at("message") == e.message);
    if (e.ref.empty()) {
      CHECK(j.size() == 3);
      CHECK_FALSE(j.contains("ref"));
    } else {
      CHECK(j.size() == 4);
      CHECK(j.at("ref") == "join");
    }
  }
}

TEST_CASE("native encode: invalid UTF-8 in strings still yields valid JSON", "[native]") {
  const std::string bad = "x\xff\xfe\xc3y";
  std::vector<nv::server_message> messages = {
      nv::joined{bad, 1, 1},
      nv::neighbors{bad, {{1, true, nv::locality::asn, 3}}, {2}},
      nv::signal_relay{bad, 1, {"{}"}},
      nv::error{nv::error_code::bad_json, bad, bad},
  };
  for (const auto& m : messages) {
    std::string text;
    REQUIRE_NOTHROW(text = nv::encode(m));
    json j;
    REQUIRE_NOTHROW(j = json::parse(text));
    CHECK(j.at("type") == std::string(nv::server_type_names[m.index()]));
  }
}

// ------------------------------------------------------------------ client encoders round trip

TEST_CASE("native: client encoders decode back to the same message", "[native]") {
  nv::hello h{true, 12};
  auto h2 = expect<nv::hello>(decode(nv::encode_hello(h)));
  CHECK(h2.native);
  CHECK(h2.max_neighbors == 12u);

  nv::join j{key, 123456789, 16384, nv::join::holding::some, std::string("\x80\x00\x7f", 3)};
  auto j2 = expect<nv::join>(decode(nv::encode_join(j)));
  CHECK(j2.swarm == key);
  CHECK(j2.size == j.size);
  CHECK(j2.block_size == j.block_size);
  CHECK(j2.have == j.have);
  CHECK(j2.bitfield_bytes == j.bitfield_bytes);
  j.have = nv::join::holding::all;
  CHECK(expect<nv::join>(decode(nv::encode_join(j))).have == nv::join::holding::all);
  j.have = nv::join::holding::none;
  CHECK(expect<nv::join>(decode(nv::encode_join(j))).have == nv::join::holding::none);

  nv::have hv{key, {5, 0, 99}};
  CHECK(expect<nv::have>(decode(nv::encode_have(hv))).blocks == hv.blocks);

  CHECK(expect<nv::leave>(decode(nv::encode_leave({key}))).swarm == key);

  nv::signal s;
  s.swarm = key;
  s.to = 0xabcdef;
  s.data = {R"({"type":"answer","sdp":"x"})"};
  auto s2 = expect<nv::signal>(decode(nv::encode_signal(s)));
  CHECK(s2.to == s.to);
  CHECK(s2.data == s.data);
  CHECK(s2.kind == "answer");

  nv::report r{key, 1, 2, 3};
  auto r2 = expect<nv::report>(decode(nv::encode_report(r)));
  CHECK(r2.http_bytes == 1);
  CHECK(r2.p2p_bytes == 2);
  CHECK(r2.uploaded_bytes == 3);
}

// ------------------------------------------------------------------ hostile input

TEST_CASE("native decode: hostile input never throws", "[native][hostile]") {
  const std::vector<std::string> valid = {
      nv::encode_hello({true, 8}),
      nv::encode_join({key, 1 << 20, 16384, nv::join::holding::some, std::string(8, '\xa5')}),
      nv::encode_have({key, {1, 2, 3}}),
      nv::encode_leave({key}),
      R"({"type":"signal","swarm":"https://cdn.example/v.mp4","to":"0000000000000001","data":{"type":"offer","sdp":"v=0"}})",
      nv::encode_report({key, 10, 20, 30}),
  };
  std::mt19937 rng(2024);
  SECTION("every prefix of every valid frame") {
    for (const auto& v : valid)
      for (std::size_t n = 0; n <= v.size(); ++n) check_decodes_safely(v.substr(0, n));
  }
  SECTION("random byte mutations of valid frames") {
    const std::string interesting = "{}[]\":,\\-01239eE.+ntfa\x00\xff\xc3";
    std::uniform_int_distribution<int> byte(0, 255);
    for (int round = 0; round < 20000; ++round) {
      std::string text = valid[static_cast<std::size_t>(round) % valid.size()];
      const int edits = 1 + round % 4;
      for (int e = 0; e < edits && !text.empty(); ++e) {
        std::uniform_int_distribution<std::size_t> pos(0, text.size() - 1);
        const char c = round % 2 ? static_cast<char>(byte(rng)) : interesting[pos(rng) % interesting.size()];
        switch (rng() % 3) {
          case 0: text[pos(rng)] = c; break;
          case 1: text.insert(pos(rng), 1, c); break;
          default: text.erase(pos(rng), 1); break;
        }
      }
      check_decodes_safely(text);
    }
  }
  SECTION("wrong types in every field of every message") {
    const json wrongs[] = {json(nullptr), json(true), json(-1), json(-9223372036854775807LL - 1), json(18446744073709551615ull),
                           json(1e308), json(-0.0), json(""), json("\xc3\xa9"), json::array(), json::array({json::object()}),
                           json::object({{"type", "offer"}})};
    for (const auto& v : valid) {
      const json base = json::parse(v);
      for (const auto& [field, _] : base.items())
        for (const auto& w : wrongs) {
          json m = base;
          m[field] = w;
          check_decodes_safely(m.dump());
        }
    }
  }
  SECTION("random bytes") {
    std::uniform_int_distribution<int> byte(0, 255);
    for (int round = 0; round < 5000; ++round) {
      std::string text(static_cast<std::size_t>(round % 64), '\0');
      for (auto& c : text) c = static_cast<char>(byte(rng));
      check_decodes_safely(text);
    }
  }
}
