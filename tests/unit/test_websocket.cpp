// RFC 6455 server-side framing: handshake key, decoder rules, server frame headers.
#include <catch2/catch.hpp>

#include <string>

#include "../common/ws_client_frame.hpp"
#include "protocol/websocket.hpp"

namespace ws = swarmcoord::protocol::websocket;
using kind = ws::event::kind;

namespace {

using swarmcoord::test::client_frame;

constexpr std::uint8_t fin = 0x80;
constexpr std::uint8_t text = 0x1, binary = 0x2, cont = 0x0, close_op = 0x8, ping = 0x9, pong = 0xA;

ws::event decode_one(ws::decoder& d, std::string& bytes) { return d.next(bytes.data(), bytes.size()); }

}  // namespace

TEST_CASE("accept key of the RFC 6455 example", "[websocket]") {
  CHECK(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  CHECK_FALSE(ws::accept_key(""));
  CHECK_FALSE(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ="));    // 23 characters
  CHECK_FALSE(ws::accept_key("dGhlIHNhbXBsZSBub25j*Q=="));   // not base64
  CHECK_FALSE(ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=x"));   // padding
}

TEST_CASE("a masked text frame decodes in place", "[websocket]") {
  ws::decoder d(1024);
  auto bytes = client_frame(fin | text, "hello, tracker");
  auto e = decode_one(d, bytes);
  REQUIRE(e.what == kind::message);
  CHECK(e.payload == "hello, tracker");
  CHECK_FALSE(e.binary);
  CHECK(e.consumed == bytes.size());
}

TEST_CASE("incomplete frames ask for more at every split point", "[websocket]") {
  const std::string payload(300, 'x');  // 16-bit extended length
  const auto whole = client_frame(fin | text, payload);
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    ws::decoder d(1024);
    std::string part = whole.substr(0, cut);
    auto e = decode_one(d, part);
    INFO("cut at " << cut);
    CHECK(e.what == kind::need_more);
    CHECK(e.consumed == 0);
  }
  ws::decoder d(1024);
  std::string all = whole;
  auto e = decode_one(d, all);
  REQUIRE(e.what == kind::message);
  CHECK(e.payload == payload);
}

TEST_CASE("64-bit lengths and back-to-back frames", "[websocket]") {
  const std::string big(70000, 'b');
  ws::decoder d(100000);
  std::string bytes = client_frame(fin | binary, big) + client_frame(fin | text, "next");
  auto e = decode_one(d, bytes);
  REQUIRE(e.what == kind::message);
  CHECK(e.binary);
  CHECK(e.payload == big);
  auto rest = bytes.substr(e.consumed);
  auto e2 = decode_one(d, rest);
  REQUIRE(e2.what == kind::message);
  CHECK(e2.payload == "next");
}

TEST_CASE("fragments join, with control frames between them", "[websocket]") {
  ws::decoder d(1024);
  std::string bytes = client_frame(text, "frag") + client_frame(fin | ping, "p!") + client_frame(cont, "men") +
                      client_frame(fin | cont, "ted \xc3\xa9");
  std::vector<ws::event> events;
  std::vector<std::string> payloads;
  std::size_t at = 0;
  while (at < bytes.size()) {
    auto e = d.next(bytes.data() + at, bytes.size() - at);
    REQUIRE(e.what != kind::need_more);
    REQUIRE(e.what != kind::fail);
    events.push_back(e);
    payloads.emplace_back(e.payload);
    at += e.consumed;
  }
  REQUIRE(events.size() == 4);
  CHECK(events[0].what == kind::fragment);
  CHECK(events[1].what == kind::ping);
  CHECK(payloads[1] == "p!");
  CHECK(events[2].what == kind::fragment);
  CHECK(events[3].what == kind::message);
  CHECK(payloads[3] == "fragmented \xc3\xa9");
  CHECK(d.buffered() == std::string_view("fragmented \xc3\xa9").size());
  // The joined message is let go on the next call.
  std::string more = client_frame(fin | text, "x");
  CHECK(decode_one(d, more).what == kind::message);
  CHECK(d.buffered() == 0);
}

TEST_CASE("a multi-byte character split across fragments is valid", "[websocket]") {
  ws::decoder d(1024);
  std::string bytes = client_frame(text, "caf\xc3") + client_frame(fin | cont, "\xa9");
  auto e1 = decode_one(d, bytes);
  REQUIRE(e1.what == kind::fragment);
  auto rest = bytes.substr(e1.consumed);
  auto e2 = decode_one(d, rest);
  REQUIRE(e2.what == kind::message);
  CHECK(e2.payload == "caf\xc3\xa9");
}

TEST_CASE("protocol violations fail with the RFC's close codes", "[websocket]") {
  struct bad_case {
    const char* name;
    std::string bytes;
    ws::close_code code;
  };
  const std::string big126(200, 'a');
  std::string non_minimal = client_frame(fin | text, "short", true, true);
  std::vector<bad_case> cases = {
      {"unmasked", client_frame(fin | text, "hi", false), ws::close_code::protocol_error},
      {"reserved opcode", client_frame(fin | 0x3, "hi"), ws::close_code::protocol_error},
      {"reserved opcode 0xB", client_frame(fin | 0xB, ""), ws::close_code::protocol_error},
      {"rsv1", client_frame(fin | 0x40 | text, "hi"), ws::close_code::protocol_error},
      {"long ping", client_frame(fin | ping, std::string(126, 'p')), ws::close_code::protocol_error},
      {"fragmented ping", client_frame(ping, "p"), ws::close_code::protocol_error},
      {"lone continuation", client_frame(fin | cont, "x"), ws::close_code::protocol_error},
      {"data inside fragments", client_frame(text, "a") + client_frame(fin | text, "b"), ws::close_code::protocol_error},
      {"one-byte close", client_frame(fin | close_op, "x"), ws::close_code::protocol_error},
      {"close code 999", client_frame(fin | close_op, std::string("\x03\xe7", 2)), ws::close_code::protocol_error},
      {"close code 1005", client_frame(fin | close_op, std::string("\x03\xed", 2)), ws::close_code::protocol_error},
      {"close reason not UTF-8", client_frame(fin | close_op, std::string("\x03\xe8\xff", 3)), ws::close_code::invalid_payload},
      {"text not UTF-8", client_frame(fin | text, "\xff\xfe"), ws::close_code::invalid_payload},
      {"surrogate", client_frame(fin | text, "\xed\xa0\x80"), ws::close_code::invalid_payload},
      {"fragments not UTF-8", client_frame(text, "ok") + client_frame(fin | cont, "\xc3"), ws::close_code::invalid_payload},
      {"non-minimal length", non_minimal, ws::close_code::protocol_error},
      {"over the limit", client_frame(fin | text, big126), ws::close_code::too_big},
      {"fragments over the limit", client_frame(text, std::string(100, 'a')) + client_frame(fin | cont, std::string(100, 'a')),
       ws::close_code::too_big},
  };
  for (auto& c : cases) {
    INFO(c.name);
    ws::decoder d(150);
    ws::event e;
    std::size_t at = 0;
    do {
      e = d.next(c.bytes.data() + at, c.bytes.size() - at);
      at += e.consumed;
    } while (e.what == kind::fragment || e.what == kind::ping);
    REQUIRE(e.what == kind::fail);
    CHECK(e.code == c.code);
    CHECK(std::string_view(e.reason).size() > 0);
  }
}

TEST_CASE("an oversized frame fails from its header alone", "[websocket]") {
  ws::decoder d(1000);
  std::string header = client_frame(fin | text, std::string(70000, 'x')).substr(0, 14);  // header and mask only
  auto e = decode_one(d, header);
  REQUIRE(e.what == kind::fail);
  CHECK(e.code == ws::close_code::too_big);
}

TEST_CASE("close frames carry code and reason", "[websocket]") {
  ws::decoder d(1024);
  std::string bytes = client_frame(fin | close_op, std::string("\x03\xe8", 2) + "bye");
  auto e = decode_one(d, bytes);
  REQUIRE(e.what == kind::close);
  CHECK(e.raw_code == 1000);
  CHECK(e.payload == "bye");
  std::string empty = client_frame(fin | close_op, "");
  auto e2 = decode_one(d, empty);
  REQUIRE(e2.what == kind::close);
  CHECK(e2.code == ws::close_code::no_status);
  std::string app = client_frame(fin | close_op, std::string("\x0f\xa0", 2));  // 4000
  CHECK(decode_one(d, app).raw_code == 4000);
}

TEST_CASE("pings and pongs keep their payload", "[websocket]") {
  ws::decoder d(1024);
  const std::string p(125, 'q');
  std::string bytes = client_frame(fin | ping, p) + client_frame(fin | pong, "");
  auto e = decode_one(d, bytes);
  REQUIRE(e.what == kind::ping);
  CHECK(e.payload == p);
  auto rest = bytes.substr(e.consumed);
  CHECK(decode_one(d, rest).what == kind::pong);
}

TEST_CASE("server frame headers in all three length forms", "[websocket]") {
  char h[ws::max_header_bytes];
  for (std::size_t n : {0u, 125u, 126u, 65535u, 65536u, 70000u}) CHECK(ws::write_header(h, ws::opcode::text, n) == ws::header_size(n));
  REQUIRE(ws::write_header(h, ws::opcode::text, 5) == 2);
  CHECK(static_cast<unsigned char>(h[0]) == 0x81);
  CHECK(static_cast<unsigned char>(h[1]) == 5);
  REQUIRE(ws::write_header(h, ws::opcode::text, 126) == 4);
  CHECK(static_cast<unsigned char>(h[1]) == 126);
  CHECK(static_cast<unsigned char>(h[2]) == 0);
  CHECK(static_cast<unsigned char>(h[3]) == 126);
  REQUIRE(ws::write_header(h, ws::opcode::close, 70000) == 10);
  CHECK(static_cast<unsigned char>(h[0]) == 0x88);
  CHECK(static_cast<unsigned char>(h[1]) == 127);
  std::uint64_t n = 0;
  for (int i = 2; i < 10; ++i) n = (n << 8) | static_cast<unsigned char>(h[i]);
  CHECK(n == 70000);
  CHECK(ws::close_payload(ws::close_code::too_big, "big") == std::string("\x03\xf1", 2) + "big");
}
