// codec_bench: time per message of both codecs on their hot messages. WebTorrent: decoding an
// announce with 10 offers of 128-character SDP and an answer (as bench/loadgen builds them),
// encoding the offer relay and the announce response. Native: decoding a join (a bitfield of
// 1024 blocks), a have (16 blocks) and a signal (an offer of ~1 KB of SDP, as a browser sends
// it), encoding the signal relay. Standalone, single-threaded; prints the mean of the best of
// several rounds (the least disturbed by other work on the machine).
//
//   codec_bench [iterations [case]]   (default 200000 per round; case: one of the names
//                                      printed, to run only it, e.g. under callgrind)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <variant>

#include "protocol/bitfield.hpp"
#include "protocol/native.hpp"
#include "protocol/webtorrent.hpp"

namespace {

namespace wt = swarmcoord::protocol::webtorrent;
namespace nv = swarmcoord::protocol::native;
using swarmcoord::protocol::binary_id;

constexpr char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

// An SDP of exactly `len` characters once JSON-decoded, as JSON string content.
std::string make_sdp(std::size_t len, std::string_view kind) {
  std::string head = "v=0\\r\\no=- 0000000000000000 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\n"
                     "a=group:BUNDLE 0\\r\\na=x-loadgen:";
  head += kind;
  head += "\\r\\na=ice-pwd:";
  std::size_t decoded = 0;
  for (std::size_t i = 0; i < head.size(); ++i, ++decoded)
    if (head[i] == '\\') ++i;
  std::string pad;
  for (std::size_t i = decoded + 2; i < len; ++i) pad += alnum[i % 62];
  return head + pad + "\\r\\n";
}

std::string announce_text(unsigned offers, std::size_t sdp_len) {
  const std::string sdp = make_sdp(sdp_len, "offer");
  std::string t = R"({"action":"announce","info_hash":")" + std::string(20, 'I') + R"(","peer_id":")" +
                  std::string(20, 'P') +
                  R"(","numwant":10,"uploaded":0,"downloaded":0,"left":50,"event":"started","offers":[)";
  for (unsigned i = 0; i < offers; ++i) {
    if (i) t += ',';
    t += R"({"offer":{"type":"offer","sdp":")" + sdp + R"("},"offer_id":")";
    t += std::string(19, 'O') + alnum[i] + R"("})";
  }
  return t + "]}";
}

std::string answer_text(std::size_t sdp_len) {
  return R"({"action":"announce","info_hash":")" + std::string(20, 'I') + R"(","peer_id":")" +
         std::string(20, 'P') + R"(","to_peer_id":")" + std::string(20, 'T') + R"(","offer_id":")" +
         std::string(20, 'O') + R"(","answer":{"type":"answer","sdp":")" + make_sdp(sdp_len, "answer") + R"("}})";
}

// ---- native messages, as the web client sends them

constexpr char native_swarm[] = "https://cdn.example.com/video/seg-17.ts";

std::string native_join_text(std::size_t blocks) {
  std::string bitfield((blocks + 7) / 8, '\0');
  for (std::size_t i = 0; i < blocks; i += 3) bitfield[i / 8] |= static_cast<char>(0x80 >> (i % 8));
  return std::string(R"({"type":"join","swarm":")") + native_swarm + R"(","size":)" + std::to_string(blocks * 65536) +
         R"(,"block_size":65536,"have":")" + swarmcoord::protocol::base64_encode(bitfield) + R"("})";
}

std::string native_have_text(std::size_t blocks) {
  std::string t = std::string(R"({"type":"have","swarm":")") + native_swarm + R"(","blocks":[)";
  for (std::size_t i = 0; i < blocks; ++i) t += (i ? "," : "") + std::to_string(100 + 7 * i);
  return t + "]}";
}

// A data-channel offer as Chrome writes it (with its host and server-reflexive candidates:
// ~1 KB), as JSON string content.
std::string browser_offer_sdp() {
  return "v=0\\r\\no=- 4611731400430051336 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0\\r\\n"
         "a=extmap-allow-mixed\\r\\na=msid-semantic: WMS\\r\\nm=application 53017 UDP/DTLS/SCTP webrtc-datachannel\\r\\n"
         "c=IN IP4 198.51.100.23\\r\\n"
         "a=candidate:2999745851 1 udp 2122260223 192.168.77.1 53017 typ host generation 0 network-id 1 network-cost 10\\r\\n"
         "a=candidate:1606961068 1 udp 2122194687 10.0.2.15 49324 typ host generation 0 network-id 2 network-cost 10\\r\\n"
         "a=candidate:4233069003 1 tcp 1518280447 192.168.77.1 9 typ host tcptype active generation 0 network-id 1 network-cost 10\\r\\n"
         "a=candidate:842163049 1 udp 1686052607 198.51.100.23 53017 typ srflx raddr 192.168.77.1 rport 53017 generation 0 network-id 1 network-cost 10\\r\\n"
         "a=ice-ufrag:Fq3x\\r\\na=ice-pwd:7Tf+fXq2mNkbqsd3IWqtZ6ER\\r\\na=ice-options:trickle\\r\\n"
         "a=fingerprint:sha-256 8A:1D:4F:0E:52:73:9B:C6:2E:A0:17:5D:38:E4:6B:91:C2:07:FA:3E:64:D9:20:8B:15:7C:A3:4E:F0:96:2B:D1\\r\\n"
         "a=setup:actpass\\r\\na=mid:0\\r\\na=sctp-port:5000\\r\\na=max-message-size:262144\\r\\n";
}

std::string native_signal_text() {
  return std::string(R"({"type":"signal","swarm":")") + native_swarm +
         R"(","to":"3f2a9c0d00000007","data":{"type":"offer","sdp":")" + browser_offer_sdp() + R"("}})";
}

// Keeps results observable so the compiler cannot drop the work.
volatile std::size_t sink;

// Mean ns per call of the best of `rounds` rounds of `n` calls.
double time_ns(std::size_t n, int rounds, const std::function<std::size_t()>& once) {
  double best = 1e300;
  for (int r = 0; r < rounds; ++r) {
    std::size_t acc = 0;
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < n; ++i) acc += once();
    const std::chrono::duration<double, std::nano> took = std::chrono::steady_clock::now() - start;
    sink = acc;
    best = std::min(best, took.count() / static_cast<double>(n));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t n = 200000;
  if (argc > 1) n = std::max<std::size_t>(1, std::strtoul(argv[1], nullptr, 10));
  const std::string only = argc > 2 ? argv[2] : "";

  const std::string announce = announce_text(10, 128);
  const std::string answer = answer_text(128);

  // The relays carry what a client sent, so their SDP comes out of the decoder.
  auto decoded = wt::decode_client_message(announce);
  auto decoded_answer = wt::decode_client_message(answer);
  if (!std::holds_alternative<wt::announce>(decoded) || !std::holds_alternative<wt::answer>(decoded_answer)) {
    std::fprintf(stderr, "codec_bench: the sample messages do not decode\n");
    return 1;
  }
  const auto& a = std::get<wt::announce>(decoded);
  if (a.offers.size() != 10) {
    std::fprintf(stderr, "codec_bench: %zu offers decoded, expected 10\n", a.offers.size());
    return 1;
  }
  const wt::server_message relay = wt::offer_relay{a.info_hash, a.peer_id, a.offers[0].offer_id, a.offers[0].sdp};
  const wt::server_message response = wt::announce_response{a.info_hash, 12, 34, 120};

  const nv::decode_limits limits;
  const std::string join = native_join_text(1024), have = native_have_text(16), signal = native_signal_text();
  auto decoded_join = nv::decode_client_message(join, limits);
  auto decoded_have = nv::decode_client_message(have, limits);
  auto decoded_signal = nv::decode_client_message(signal, limits);
  if (!std::holds_alternative<nv::join>(decoded_join) || std::get<nv::join>(decoded_join).bitfield_bytes.size() != 128 ||
      !std::holds_alternative<nv::have>(decoded_have) || std::get<nv::have>(decoded_have).blocks.size() != 16 ||
      !std::holds_alternative<nv::signal>(decoded_signal) || std::get<nv::signal>(decoded_signal).kind != "offer") {
    std::fprintf(stderr, "codec_bench: the native sample messages do not decode\n");
    return 1;
  }
  // As with WebTorrent, the relay carries what the decoder made of the sender's data.
  const auto& s = std::get<nv::signal>(decoded_signal);
  const nv::server_message signal_relay = nv::signal_relay{s.swarm, 0x9b00c41e00000012ull, s.data};

  struct bench_case {
    const char* name;
    std::size_t bytes;
    std::function<std::size_t()> once;
  };
  const bench_case cases[] = {
      {"decode_announce", announce.size(),
       [&] { return wt::decode_client_message(announce).index(); }},
      {"decode_answer", answer.size(), [&] { return wt::decode_client_message(answer).index(); }},
      {"encode_offer_relay", wt::encode(relay).size(), [&] { return wt::encode(relay).size(); }},
      {"encode_announce_response", wt::encode(response).size(), [&] { return wt::encode(response).size(); }},
      {"native_decode_join", join.size(), [&] { return nv::decode_client_message(join, limits).index(); }},
      {"native_decode_have", have.size(), [&] { return nv::decode_client_message(have, limits).index(); }},
      {"native_decode_signal", signal.size(), [&] { return nv::decode_client_message(signal, limits).index(); }},
      {"native_encode_signal_relay", nv::encode(signal_relay).size(), [&] { return nv::encode(signal_relay).size(); }},
  };

  std::printf("codec_bench: WebTorrent and native codecs, ns per message (best of 5 rounds of %zu)\n", n);
  std::printf("%-26s %8s %10s\n", "case", "bytes", "ns/msg");
  for (const auto& c : cases) {
    if (!only.empty() && only != c.name) continue;
    std::printf("%-26s %8zu %10.1f\n", c.name, c.bytes, time_ns(n, only.empty() ? 5 : 1, c.once));
    std::fflush(stdout);
  }
  return 0;
}
