// The small codecs under both protocols: binary ids (latin1 in UTF-8), bitfields, base64, the
// UTF-8 checks, JSON string escaping and repair, peer ids, client addresses, and the server
// side of WebSocket framing (handshake key, frame headers, close payloads). The first
// byte picks the helper, the rest is its input. Each decode that succeeds encodes back to
// exactly its input (the codecs accept canonical forms only), and each writer's output reads
// back as what was written.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "protocol/binary_id.hpp"
#include "protocol/bitfield.hpp"
#include "protocol/json_dom.hpp"
#include "protocol/json_escape.hpp"
#include "protocol/json_writer.hpp"
#include "protocol/native.hpp"
#include "protocol/websocket.hpp"
#include "server/swarm/address.hpp"

namespace proto = swarmcoord::protocol;
namespace sw = swarmcoord::swarm;

namespace {

bool utf8_by_steps(std::string_view s) {
  for (std::size_t at = 0; at < s.size();) {
    const int n = proto::json_writer_detail::utf8_step(s, at);
    if (n <= 0) return false;
    at += static_cast<std::size_t>(n);
  }
  return true;
}

// The JSON string's value, or nothing when the text is no JSON string.
std::optional<std::string> read_json_string(const std::string& text) {
  simdjson::dom::element e;
  std::string_view value;
  if (proto::parse_json(text).get(e) || e.get_string().get(value)) return std::nullopt;
  return std::string(value);
}

// A byte at a time, as JSON.stringify escapes: the reference for append_escaped's word path.
std::string escaped_by_bytes(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    char buf[8];
    out.append(buf, static_cast<std::size_t>(proto::json_escape_detail::put_escaped(buf, c) - buf));
  }
  return out + "\"";
}

void binary_ids(std::string_view in) {
  if (const auto id = proto::decode_binary_id(in)) {
    FUZZ_REQUIRE(proto::encode_binary_id(*id) == in);  // one spelling per id
    FUZZ_REQUIRE(id->hex().size() == 40);
  }
  if (in.size() >= proto::binary_id::size) {
    proto::binary_id id;
    for (std::size_t i = 0; i < id.size; ++i) id.bytes[i] = static_cast<std::uint8_t>(in[i]);
    const auto text = proto::encode_binary_id(id);
    FUZZ_REQUIRE(utf8_by_steps(text));
    FUZZ_REQUIRE(proto::decode_binary_id(text) == id);
  }
}

void base64(std::string_view in) {
  if (const auto bytes = proto::base64_decode(in)) FUZZ_REQUIRE(proto::base64_encode(*bytes) == in);
  const auto text = proto::base64_encode(in);
  FUZZ_REQUIRE(text.size() % 4 == 0);
  FUZZ_REQUIRE(proto::base64_decode(text) == std::string(in));
}

void bitfields(FuzzedDataProvider& in) {
  const auto size = in.ConsumeIntegralInRange<std::uint32_t>(0, 4096);
  const auto other_bytes = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(0, 512));
  const auto bytes = in.ConsumeRemainingBytesAsString();
  const auto f = proto::bitfield::from_bytes(bytes, size);
  if (!f) {
    FUZZ_REQUIRE(bytes.size() != (std::size_t{size} + 7) / 8 || (size % 8 != 0 && !bytes.empty() &&
                                                              (static_cast<unsigned char>(bytes.back()) & (0xFFu >> (size % 8)))));
    return;
  }
  FUZZ_REQUIRE(f->to_bytes() == bytes);
  FUZZ_REQUIRE(f->size() == size);
  std::uint32_t ones = 0;
  for (unsigned char c : bytes) ones += static_cast<std::uint32_t>(std::popcount(c));
  FUZZ_REQUIRE(f->count() == ones);
  FUZZ_REQUIRE(f->complete() == (ones == size));
  FUZZ_REQUIRE(f->empty() == (ones == 0));
  std::uint32_t seen = 0;
  std::int64_t last = -1;
  f->for_each_set([&](std::uint32_t i) {
    FUZZ_REQUIRE(i < size && static_cast<std::int64_t>(i) > last && f->test(i));
    last = i;
    ++seen;
  });
  FUZZ_REQUIRE(seen == ones);

  // Against another field of the same size: missing counts, and set() adding what was missing.
  std::string padded = other_bytes;
  padded.resize(bytes.size(), '\0');
  if (size % 8 != 0 && !padded.empty()) padded.back() = static_cast<char>(padded.back() & ~(0xFFu >> (size % 8)));
  const auto g = proto::bitfield::from_bytes(padded, size);
  FUZZ_REQUIRE(g.has_value());
  std::uint32_t missing = 0;
  for (std::uint32_t i = 0; i < size; ++i) missing += f->test(i) && !g->test(i);
  FUZZ_REQUIRE(f->count_missing_from(*g) == missing);
  FUZZ_REQUIRE(f->any_missing_from(*g) == (missing > 0));
  auto merged = *g;
  std::uint32_t added = 0;
  f->for_each_set([&](std::uint32_t i) { added += merged.set(i); });
  FUZZ_REQUIRE(added == missing);
  FUZZ_REQUIRE(merged.count() == g->count() + missing);
  FUZZ_REQUIRE(f->count_missing_from(merged) == 0);
  FUZZ_REQUIRE(proto::bitfield::from_bytes(merged.to_bytes(), size) == merged);
}

void utf8_and_json_strings(std::string_view in) {
  const bool valid = utf8_by_steps(in);
  FUZZ_REQUIRE(proto::websocket::valid_utf8(in) == valid);

  std::string escaped;
  proto::append_escaped(escaped, in);
  FUZZ_REQUIRE(escaped == escaped_by_bytes(in));
  if (valid) FUZZ_REQUIRE(read_json_string(escaped) == std::string(in));

  std::string repaired;
  proto::append_json_string(repaired, in);
  const auto back = read_json_string(repaired);
  FUZZ_REQUIRE_MSG(back.has_value(), repaired);  // always valid JSON, whatever the input
  FUZZ_REQUIRE(valid ? *back == in : utf8_by_steps(*back));

  for (std::size_t limit : {std::size_t{0}, std::size_t{1}, std::size_t{5}, in.size() / 2}) {
    const auto cut = proto::shorten_utf8(in, limit);
    if (valid) FUZZ_REQUIRE(utf8_by_steps(cut));
    FUZZ_REQUIRE(cut.size() <= std::max(limit, in.size()) + 3);
  }
}

void peer_ids(std::string_view in) {
  if (const auto id = proto::native::parse_peer_id(in)) FUZZ_REQUIRE(proto::native::format_peer_id(*id) == in);
  if (in.size() >= 8) {
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < 8; ++i) id = id << 8 | static_cast<unsigned char>(in[i]);
    FUZZ_REQUIRE(proto::native::parse_peer_id(proto::native::format_peer_id(id)) == id);
  }
}

void addresses(FuzzedDataProvider& in) {
  const auto text = in.ConsumeRandomLengthString(64);
  if (const auto ip = sw::ip_address::parse(text)) FUZZ_REQUIRE(sw::ip_address::parse(ip->to_string()) == ip);
  std::vector<sw::cidr> trusted;
  if (const auto range = sw::cidr::parse(text)) {
    FUZZ_REQUIRE(range->prefix <= 128);
    FUZZ_REQUIRE(range->contains(range->base));
    trusted.push_back(*range);
  }
  trusted.push_back(*sw::cidr::parse("10.0.0.0/8"));
  const auto xff = in.ConsumeRandomLengthString(256);
  const auto forwarded = in.ConsumeRemainingBytesAsString();
  const auto peer = sw::ip_address::v4(10, 1, 2, 3);
  const auto client = sw::client_address(peer, xff, forwarded, trusted);
  // Either the socket peer or an address some hop named.
  FUZZ_REQUIRE(client == peer || xff.find_first_of("0123456789abcdefABCDEF:") != std::string::npos ||
               forwarded.find_first_of("0123456789abcdefABCDEF:") != std::string::npos);
}

void websocket_server_side(FuzzedDataProvider& in) {
  namespace ws = proto::websocket;
  const auto key = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(0, 30));
  if (const auto accept = ws::accept_key(key)) {
    FUZZ_REQUIRE(key.size() == 24 && accept->size() == 28);
    const auto digest = proto::base64_decode(*accept);
    FUZZ_REQUIRE(digest && digest->size() == 20);  // SHA-1
  }
  const auto reason = in.ConsumeRandomLengthString(300);
  const auto close = ws::close_payload(ws::close_code::going_away, reason);
  FUZZ_REQUIRE(close.size() <= 125 && close.size() == 2 + std::min<std::size_t>(reason.size(), 123));

  // A server header, given the mask bit and a key as a client sends it, frames the payload the
  // decoder takes back, whatever its length.
  const auto payload_size = in.PickValueInArray<std::size_t>({0, 1, 125, 126, 127, 65535, 65536, 70000}) +
                            in.ConsumeIntegralInRange<std::size_t>(0, 3);
  const auto fill = in.ConsumeIntegral<char>();
  char header[ws::max_header_bytes];
  const auto n = ws::write_header(header, ws::opcode::binary, payload_size);
  FUZZ_REQUIRE(n == ws::header_size(payload_size) && n <= ws::max_header_bytes);
  std::string frame(header, n);
  frame[1] = static_cast<char>(frame[1] | 0x80);
  const char mask[4] = {1, 2, 3, 4};
  frame.append(mask, 4);
  for (std::size_t i = 0; i < payload_size; ++i) frame.push_back(static_cast<char>(fill ^ mask[i % 4]));
  ws::decoder decoder(1 << 20);
  const auto e = decoder.next(frame.data(), frame.size());
  FUZZ_REQUIRE(e.what == ws::event::kind::message && e.binary && e.consumed == frame.size());
  FUZZ_REQUIRE(e.payload == std::string(payload_size, fill));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  FuzzedDataProvider in(data + 1, size - 1);
  switch (data[0] % 7) {
    case 0: binary_ids(rest); break;
    case 1: base64(rest); break;
    case 2: bitfields(in); break;
    case 3: utf8_and_json_strings(rest); break;
    case 4: peer_ids(rest); break;
    case 5: addresses(in); break;
    case 6: websocket_server_side(in); break;
  }
  return 0;
}
