// codec_bench: time per message of the WebTorrent codec on the hot messages of a WebTorrent
// load — decoding an announce with 10 offers of 128-character SDP and an answer (as
// bench/loadgen builds them), encoding the offer relay and the announce response. Standalone,
// single-threaded; prints the mean of the best of several rounds (the least disturbed by
// other work on the machine).
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

#include "protocol/webtorrent.hpp"

namespace {

namespace wt = swarmcoord::protocol::webtorrent;
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
  };

  std::printf("codec_bench: WebTorrent codec, ns per message (best of 5 rounds of %zu)\n", n);
  std::printf("%-26s %8s %10s\n", "case", "bytes", "ns/msg");
  for (const auto& c : cases) {
    if (!only.empty() && only != c.name) continue;
    std::printf("%-26s %8zu %10.1f\n", c.name, c.bytes, time_ns(n, only.empty() ? 5 : 1, c.once));
    std::fflush(stdout);
  }
  return 0;
}
