// Native protocol decoding at the JSON level: signal data relayed as received, keys given twice,
// null fields, the nesting limit, invalid UTF-8 and the numbers where JSON parsers differ.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "native_test_helpers.hpp"
#include "protocol/native.hpp"

namespace {

using nlohmann::json;
using namespace swarmcoord::test::native;

const std::string key = "https://cdn.example/v.mp4";
const std::string head = R"({"type":"signal","swarm":"https://cdn.example/v.mp4","to":"00000000deadbeef","data":)";

nv::signal decode_signal_data(const std::string& data) { return expect<nv::signal>(decode(head + data + "}")); }

// A hello with `value` under an unknown key: whatever the value, a valid frame is a hello.
std::string hello_with(const std::string& value) { return R"({"type":"hello","x":)" + value + "}"; }

// `levels` of arrays, or of objects, with 1 innermost.
std::string nested(std::size_t levels, bool objects) {
  std::string open, close;
  for (std::size_t i = 0; i < levels; ++i) {
    open += objects ? R"({"y":)" : "[";
    close += objects ? "}" : "]";
  }
  return open + "1" + close;
}

}  // namespace

TEST_CASE("native signal: data is relayed as received, minified, keys in their order", "[native]") {
  const std::string spaced = R"({ "type" : "offer", "sdp" : "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" ,
      "z" : [ 1 , 2.5 , -7 , null , true , false , "" ] , "a" : { "y" : {} , "x" : [] } })";
  const std::string minified =
      R"({"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n","z":[1,2.5,-7,null,true,false,""],"a":{"y":{},"x":[]}})";
  const auto s = decode_signal_data(spaced);
  CHECK(s.data.text == minified);
  CHECK(s.kind == "offer");

  // Byte for byte into the relay, and through the client encoder back to the same text.
  const std::string relay = nv::encode(nv::signal_relay{s.swarm, 0x42, s.data});
  CHECK(relay == R"({"type":"signal","swarm":"https://cdn.example/v.mp4","from":"0000000000000042","data":)" + minified + "}");
  CHECK(expect<nv::signal>(decode(nv::encode_signal(s))).data == s.data);

  // Escapes as JSON.stringify writes them: what needs none is written as the character.
  const auto escaped = decode_signal_data(R"({"e":"\/\u0041\u00e9\ud83d\ude00\"\\\b\f\n\r\t\u0001\u001f"})");
  CHECK(escaped.data.text == "{\"e\":\"/A\xC3\xA9\xF0\x9F\x98\x80\\\"\\\\\\b\\f\\n\\r\\t\\u0001\\u001f\"}");
}

TEST_CASE("native decode: a key given twice counts the last time, as with JSON.parse", "[native]") {
  CHECK_FALSE(expect<nv::hello>(decode(R"({"type":"join","type":"hello"})")).native);
  CHECK(expect<nv::join>(decode(R"({"type":"hello","type":"join","swarm":"https://cdn.example/v.mp4","size":1,"block_size":1024})"))
            .swarm == key);
  const std::string join = R"({"type":"join","swarm":"https://other.example/","size":5,"block_size":1024,"swarm":"https://cdn.example/v.mp4","size":7)";
  const auto j = expect<nv::join>(decode(join + "}"));
  CHECK(j.swarm == key);
  CHECK(j.size == 7);
  CHECK(expect<nv::join>(decode(join + R"(,"have":"all","have":null})")).have == nv::join::holding::none);
  CHECK(expect<nv::join>(decode(join + R"(,"have":null,"have":"all"})")).have == nv::join::holding::all);
  expect_error(decode(join + R"(,"size":0})"), nv::error_code::invalid_field, "join");

  // In signal data the relay keeps both keys (the receiver's JSON.parse picks the last);
  // the metric label is the last type too.
  const auto s = decode_signal_data(R"({"type":"answer","sdp":"x","type":"offer"})");
  CHECK(s.data.text == R"({"type":"answer","sdp":"x","type":"offer"})");
  CHECK(s.kind == "offer");
  CHECK(decode_signal_data(R"({"type":"offer","type":null})").kind == "other");
  CHECK(decode_signal_data(R"({"type":"offer","type":5})").kind == "other");
  CHECK(decode_signal_data(R"({"type":5,"type":"candidate"})").kind == "candidate");
}

TEST_CASE("native decode: a null field counts as absent", "[native]") {
  const auto h = expect<nv::hello>(decode(R"({"type":"hello","v":null,"native":null,"max_neighbors":null})"));
  CHECK_FALSE(h.native);
  CHECK_FALSE(h.max_neighbors);
  const std::string join = R"({"type":"join","swarm":"https://cdn.example/v.mp4","size":1,"block_size":1024)";
  CHECK(expect<nv::join>(decode(join + R"(,"have":null})")).have == nv::join::holding::none);
  const std::string report = R"({"type":"report","swarm":"https://cdn.example/v.mp4","http_bytes":1,"p2p_bytes":2,"uploaded_bytes":3)";
  CHECK(expect<nv::report>(decode(report + R"(,"bad_peers":null})")).bad_peers.empty());

  // Absent where required: the same error as a missing field.
  const auto invalid = nv::error_code::invalid_field;
  CHECK(expect_error(decode(R"({"type":"leave","swarm":null})"), invalid, "leave").message == "leave.swarm must be a string");
  CHECK(expect_error(decode(R"({"type":"join","swarm":"https://cdn.example/v.mp4","size":null,"block_size":1024})"), invalid,
                     "join").message == "join.size must be a non-negative integer");
  expect_error(decode(R"({"type":"have","swarm":"https://cdn.example/v.mp4","blocks":null})"), invalid, "have");
  expect_error(decode(R"({"type":"signal","swarm":"https://cdn.example/v.mp4","to":null,"data":{}})"), invalid, "signal");
  CHECK(expect_error(decode(head + "null}"), invalid, "signal").message == "signal.data is required");
  expect_error(decode(R"({"type":null})"), invalid, "");
}

TEST_CASE("native decode: nesting deeper than 32 levels is bad_json", "[native]") {
  // The message object is the first level.
  for (bool objects : {false, true}) {
    INFO((objects ? "objects" : "arrays"));
    CHECK(expect<nv::hello>(decode(hello_with(nested(31, objects)))).max_neighbors == std::nullopt);
    const auto e = expect_error(decode(hello_with(nested(32, objects))), nv::error_code::bad_json, "");
    CHECK(e.message == "not valid JSON: JSON nested deeper than 32 levels");
    CHECK(decode_signal_data(nested(31, objects)).data.text == nested(31, objects));
    expect_error(decode(head + nested(32, objects) + "}"), nv::error_code::bad_json, "");
  }
  // A frame that is only nesting: 32 levels are JSON (not an object), 33 are not.
  expect_error(decode(nested(32, false)), nv::error_code::invalid_field, "");
  expect_error(decode(nested(33, false)), nv::error_code::bad_json, "");
  // 33 levels whose innermost container is empty too (the parser alone lets them through).
  for (bool objects : {false, true}) {
    const std::string empty_innermost = objects ? nested(31, true).replace(nested(31, true).find("1"), 1, "{}")
                                                : std::string(32, '[') + std::string(32, ']');
    CHECK(expect_error(decode(hello_with(empty_innermost)), nv::error_code::bad_json, "").message ==
          "not valid JSON: JSON nested deeper than 32 levels");
  }
  expect_error(decode(std::string(33, '[') + std::string(33, ']')), nv::error_code::bad_json, "");
  expect_error(decode(head + std::string(32, '[') + std::string(32, ']') + "}"), nv::error_code::bad_json, "");

  SECTION("hostile depth fails fast") {
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& text : {std::string(100000, '['), std::string(100000, '{'),
                                    std::string(100000, '[') + std::string(100000, ']'), hello_with(nested(100000, true))}) {
      expect_error(decode(text), nv::error_code::bad_json, "");
    }
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1));
    CHECK(expect_error(decode(std::string(100000, '[') + std::string(100000, ']')), nv::error_code::bad_json, "").message ==
          "not valid JSON: JSON nested deeper than 32 levels");
  }
  SECTION("depth is the deepest point, and brackets in strings do not count") {
    std::string wide = "[";
    for (int i = 0; i < 1000; ++i) wide += (i ? ",[1]" : "[1]");
    expect<nv::hello>(decode(hello_with(wide + "]")));
    expect<nv::hello>(decode(hello_with('"' + std::string(1000, '[') + R"(","y":"]]]}}}{{{")")));
    // An escaped quote does not end a string; an escaped backslash before a quote does.
    expect<nv::hello>(decode(hello_with(R"(["a\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", "b"])")));
    expect<nv::hello>(decode(hello_with(R"(["a\\", )" + nested(30, false) + "]")));
    expect_error(decode(hello_with(R"(["a\\", )" + nested(31, false) + "]")), nv::error_code::bad_json, "");
  }
}

TEST_CASE("native decode: invalid UTF-8 anywhere is bad_json", "[native]") {
  const std::string bad[] = {"\xff", "\x80", "\xc3\x28", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                             "\xf8\x88\x80\x80\x80", "\xe2\x82", "\xf0\x9f\x98"};
  for (const auto& b : bad) {
    for (const std::string& text : {R"({"type":"hello","x":")" + b + R"("})", R"({"type":"hello",")" + b + R"(":1})",
                                    R"({"type":"hel)" + b + R"(lo"})", head + R"({"sdp":")" + b + R"("}})",
                                    R"({"type":"leave","swarm":"https://cdn.example/)" + b + R"("})"}) {
      INFO(text);
      const auto e = expect_error(decode(text), nv::error_code::bad_json, "");
      CHECK(e.message.find("UTF-8") != std::string::npos);
    }
  }
  // Escapes that name no character: a lone surrogate.
  expect_error(decode(hello_with(R"("\ud800")")), nv::error_code::bad_json, "");
  expect_error(decode(hello_with(R"("\udc00")")), nv::error_code::bad_json, "");
  expect_error(decode(hello_with(R"("\ud800\u0041")")), nv::error_code::bad_json, "");
  // Valid UTF-8 of every length passes.
  CHECK(decode_signal_data("\"\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"").data.text ==
        "\"\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"");
}

TEST_CASE("native decode: integers beyond 64 bits read as doubles, as JSON.parse reads them", "[native]") {
  // Not bad_json: a number of the wrong kind, like 1.5.
  for (const char* big : {"18446744073709551616", "-9223372036854775809", "123456789012345678901234567890"}) {
    INFO(big);
    expect_error(decode(std::string(R"({"type":"hello","v":)") + big + "}"), nv::error_code::unsupported_version, "hello");
    expect_error(decode(std::string(R"({"type":"join","swarm":"https://cdn.example/v.mp4","block_size":1024,"size":)") + big + "}"),
                 nv::error_code::invalid_field, "join");
    expect_error(decode(std::string(R"({"type":"have","swarm":"https://cdn.example/v.mp4","blocks":[1,)") + big + "]}"),
                 nv::error_code::invalid_field, "have");
    expect<nv::hello>(decode(hello_with(big)));
  }
  // Relayed as the double; digits in strings are left alone.
  CHECK(decode_signal_data(R"({"s":"18446744073709551616","n":[18446744073709551616,-18446744073709551616],"m":18446744073709551615})")
            .data.text == R"({"s":"18446744073709551616","n":[18446744073709551616.0,-18446744073709551616.0],"m":18446744073709551615})");
  // Integers within 64 bits stay integers, whatever else in the frame is wide.
  CHECK(decode_signal_data(R"({"a":-9223372036854775808,"b":99999999999999999999})").data.text ==
        R"({"a":-9223372036854775808,"b":1e+20})");
  // Beyond a double: not JSON a peer could read.
  for (const std::string& huge : {std::string("1e400"), std::string("-1e400"), "1" + std::string(400, '0'), std::string("1E+309")}) {
    INFO(huge);
    const auto e = expect_error(decode(hello_with(huge)), nv::error_code::bad_json, "");
    CHECK(e.message.find("number") != std::string::npos);
  }
  // A syntax error elsewhere in a frame with a wide integer is still reported.
  expect_error(decode(R"({"type":"hello","x":18446744073709551616,})"), nv::error_code::bad_json, "");
  expect_error(decode(R"({"type":"hello","x":18446744073709551616 "y":1})"), nv::error_code::bad_json, "");
}

TEST_CASE("native decode: 1.0 is no integer, -0 is 0, doubles relay as the same double", "[native]") {
  expect_error(decode(R"({"type":"hello","v":1.0})"), nv::error_code::unsupported_version, "hello");
  expect_error(decode(R"({"type":"hello","max_neighbors":8.0})"), nv::error_code::invalid_field, "hello");
  expect_error(decode(R"({"type":"join","swarm":"https://cdn.example/v.mp4","size":1E6,"block_size":1024})"),
               nv::error_code::invalid_field, "join");
  const std::string report = R"({"type":"report","swarm":"https://cdn.example/v.mp4","http_bytes":-0,"p2p_bytes":0,"uploaded_bytes":)";
  CHECK(expect<nv::report>(decode(report + "0}")).http_bytes == 0);
  expect_error(decode(report + "-0.0}"), nv::error_code::invalid_field, "report");
  // JSON.parse reads -0 as the integer 0 too. (The earlier decoder refused it here only.)
  CHECK(expect<nv::have>(decode(R"({"type":"have","swarm":"https://cdn.example/v.mp4","blocks":[-0]})")).blocks ==
        std::vector<std::uint32_t>{0});
  CHECK(decode_signal_data(R"({"a":1.0,"b":1,"c":1E2,"d":-0.0,"e":1e-400,"f":-0,"g":0.1,"h":1.5e300,"i":2.5E-7})").data.text ==
        R"({"a":1.0,"b":1,"c":100.0,"d":-0.0,"e":0.0,"f":0,"g":0.1,"h":1.5e+300,"i":2.5e-07})");
}

TEST_CASE("native decode: the frame is one JSON value and nothing else", "[native]") {
  // A byte order mark before it is skipped, as it always was.
  expect<nv::hello>(decode("\xEF\xBB\xBF{\"type\":\"hello\"}"));
  expect<nv::hello>(decode(" \t\r\n{\"type\":\"hello\"} \n"));
  for (const std::string& text : {std::string("{\"type\":\"hello\"}\0", 17), std::string("{\"type\":\"hello\"}\0junk", 21),
                                  std::string("{\"type\":\"hello\"}{}"), std::string("\xEF\xBB\xBF\xEF\xBB\xBF{\"type\":\"hello\"}"),
                                  std::string("{\"type\":\"hello\"}\xEF\xBB\xBF")}) {
    INFO(text);
    expect_error(decode(text), nv::error_code::bad_json, "");
  }
}

TEST_CASE("native decode: edge values in every field of every message never throw", "[native][hostile]") {
  const std::vector<std::string> frames = {
      R"({"type":"hello","v":1,"native":true,"max_neighbors":8})",
      R"({"type":"join","swarm":"https://cdn.example/v.mp4","size":1048576,"block_size":16384,"have":"paWlpaWlpaU="})",
      R"({"type":"have","swarm":"https://cdn.example/v.mp4","blocks":[1,2,3]})",
      R"({"type":"leave","swarm":"https://cdn.example/v.mp4"})",
      R"({"type":"signal","swarm":"https://cdn.example/v.mp4","to":"0000000000000001","data":{"type":"offer","sdp":"v=0"}})",
      R"({"type":"report","swarm":"https://cdn.example/v.mp4","http_bytes":1,"p2p_bytes":2,"uploaded_bytes":3,"bad_peers":["00000000000000ff"]})",
  };
  const std::vector<std::string> values = {
      "null", "true", "0", "-0", "-0.0", "1.0", "1E2", "1e-400", "1e400", "4294967296", "9007199254740993",
      "9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616",
      "123456789012345678901234567890", "1" + std::string(400, '0'), "01", "1.", "-", "\"\"", "\"all\"",
      "\"\\u0000\"", "\"\\ud800\"", "\"\xc3\xa9\"", "\"\xff\"", "\"\xe2\x82\"", "[]", "{}", "[-0]", "[18446744073709551616]",
      "{\"type\":\"offer\",\"type\":\"answer\"}", std::string(40, '[') + std::string(40, ']'), nested(31, true),
      "\"" + std::string(20000, 'x') + "\"",
  };
  int decoded = 0;
  for (const auto& frame : frames) {
    const json fields = json::parse(frame);
    for (const auto& [name, _] : fields.items()) {
      const std::string quoted = json(name).dump();
      for (const auto& v : values) {
        std::string replaced = "{";
        for (const auto& [other, value] : fields.items())
          replaced += (replaced.size() > 1 ? "," : "") + json(other).dump() + ":" + (other == name ? v : value.dump());
        for (const std::string& text : {replaced + "}", frame.substr(0, frame.size() - 1) + "," + quoted + ":" + v + "}",
                                        "{" + quoted + ":" + v + "," + frame.substr(1)}) {
          INFO(text);
          check_decodes_safely(text);
          ++decoded;
        }
      }
    }
  }
  CHECK(decoded > 2000);
}
