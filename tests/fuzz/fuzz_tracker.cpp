// The WebTorrent tracker domain (server/swarm/tracker.cpp) driven by event sequences decoded
// from the input: announces (every event, offers with colliding ids), answers (to offers it
// relayed, or made up), connections closing, time passing, expiry, releases and scrapes, over
// a few connections, swarms and peer ids so that they collide often. After every step
// check_invariants() must come back empty, and what the tracker sends must be addressed
// sensibly.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_check.hpp"
#include "server/swarm/swarm_budget.hpp"
#include "server/swarm/tracker.hpp"

namespace sw = swarmcoord::swarm;
namespace wt = swarmcoord::protocol::webtorrent;

namespace {

constexpr int connections = 6, info_hashes = 4, peer_ids = 8, offer_ids = 10;
// Longer sequences reach no state that a few hundred steps over so few ids do not, and cost
// the fuzzer executions.
constexpr int max_steps = 256;

sw::binary_id id_of(char kind, int n) {
  sw::binary_id id;
  id.bytes.fill(static_cast<std::uint8_t>('0' + n));
  id.bytes[0] = static_cast<std::uint8_t>(kind);
  return id;
}

// Three /24s and an IPv6 /48, so that locality has something to prefer.
sw::ip_address address_of(sw::connection_id conn) {
  if (conn % 4 == 3) return *sw::ip_address::parse("2001:db8::" + std::to_string(conn));
  return sw::ip_address::v4(10, 0, static_cast<std::uint8_t>(conn % 4), static_cast<std::uint8_t>(conn));
}

struct relay_seen {
  sw::connection_id to;
  sw::binary_id info_hash, offerer, offer_id;
};

class driver {
 public:
  explicit driver(FuzzedDataProvider& in)
      : in_(in),
        budget_(std::make_shared<sw::swarm_budget>(
            sw::budget_limits{.webtorrent_swarms = in.ConsumeIntegralInRange<std::size_t>(1, 8)})),
        tracker_(config_from(in), in.ConsumeIntegral<std::uint64_t>(), budget_) {}

  void run() {
    for (int step = 0; step < max_steps && in_.remaining_bytes() > 0; ++step) {
      out_.clear();
      switch (in_.ConsumeIntegralInRange(0, 9)) {
        case 0: case 1: case 2: announce(); break;
        case 3: case 4: answer(); break;
        case 5: tracker_.on_connection_closed(connection()); break;
        case 6: now_ += in_.ConsumeIntegralInRange<sw::time_ms>(0, 400'000); break;
        case 7: tracker_.expire(now_); break;
        case 8: released(); break;
        case 9: scrapes(); break;
      }
      const auto broken = tracker_.check_invariants();
      FUZZ_REQUIRE_MSG(broken.empty(), broken);
      for (const auto& o : out_) FUZZ_REQUIRE(o.to >= 1 && o.to <= connections);
    }
  }

 private:
  static sw::tracker_config config_from(FuzzedDataProvider& in) {
    sw::tracker_config c;
    c.max_offers = in.ConsumeIntegralInRange<std::size_t>(0, 12);
    c.offer_ttl_ms = in.ConsumeIntegralInRange<sw::time_ms>(1, 200'000);
    c.peer_ttl_ms = in.ConsumeIntegralInRange<sw::time_ms>(1, 400'000);
    c.max_scrape_all = in.ConsumeIntegralInRange<std::size_t>(0, 8);
    return c;
  }

  sw::connection_id connection() { return in_.ConsumeIntegralInRange<sw::connection_id>(1, connections); }

  void announce() {
    const auto conn = connection();
    wt::announce a;
    a.info_hash = id_of('I', in_.ConsumeIntegralInRange(0, info_hashes - 1));
    a.peer_id = id_of('P', in_.ConsumeIntegralInRange(0, peer_ids - 1));
    a.event = static_cast<wt::announce_event>(in_.ConsumeIntegralInRange(0, 6));
    switch (in_.ConsumeIntegralInRange(0, 4)) {
      case 0: break;
      case 1: a.left = 0.0; break;
      case 2: a.left = 1000.0; break;
      case 3: a.left = -1.0; break;
      case 4: a.left = std::nan(""); break;
    }
    const int offers = in_.ConsumeIntegralInRange(0, 12);
    for (int i = 0; i < offers; ++i)
      a.offers.push_back({id_of('O', in_.ConsumeIntegralInRange(0, offer_ids - 1)), {R"({"type":"offer","sdp":"x"})"}});
    a.offers_skipped = in_.ConsumeIntegralInRange<std::size_t>(0, 2);
    const auto info_hash = a.info_hash, peer_id = a.peer_id;
    tracker_.on_announce(conn, address_of(conn), std::move(a), now_, out_, in_.ConsumeIntegral<std::uint32_t>());
    // The announcer hears first; everything after is one of its offers, relayed to another connection.
    FUZZ_REQUIRE(!out_.empty() && out_[0].to == conn);
    // Or it is refused by the swarm's rules (the peer_id is another live connection's, or no
    // room for a new swarm), and nothing else happens.
    if (const auto* refused = std::get_if<wt::request_error>(&out_[0].message)) {
      FUZZ_REQUIRE(refused->reason == wt::error_reason::peer_id_in_use || refused->reason == wt::error_reason::server_full);
      FUZZ_REQUIRE(out_.size() == 1);
      return;
    }
    FUZZ_REQUIRE(std::holds_alternative<wt::announce_response>(out_[0].message));
    // Its counts are the swarm's after the announce, as a scrape tells them.
    const auto& response = std::get<wt::announce_response>(out_[0].message);
    std::vector<wt::scrape_file> files;
    tracker_.scrape({info_hash}, files);
    FUZZ_REQUIRE(files.size() == 1 && files[0].complete == response.complete && files[0].incomplete == response.incomplete);
    for (std::size_t i = 1; i < out_.size(); ++i) {
      const auto* r = std::get_if<wt::offer_relay>(&out_[i].message);
      FUZZ_REQUIRE(r != nullptr && out_[i].to != conn && r->info_hash == info_hash && r->peer_id == peer_id);
      if (relays_.size() < 64) relays_.push_back({out_[i].to, info_hash, peer_id, r->offer_id});
    }
    FUZZ_REQUIRE(out_.size() - 1 <= tracker_.config().max_offers);
  }

  void answer() {
    wt::answer a;
    sw::connection_id conn;
    if (!relays_.empty() && in_.ConsumeBool()) {  // to an offer it relayed: usually valid
      const auto& r = relays_[in_.ConsumeIntegralInRange<std::size_t>(0, relays_.size() - 1)];
      conn = r.to;
      a.info_hash = r.info_hash;
      a.to_peer_id = r.offerer;
      a.offer_id = r.offer_id;
    } else {
      conn = connection();
      a.info_hash = id_of('I', in_.ConsumeIntegralInRange(0, info_hashes - 1));
      a.to_peer_id = id_of('P', in_.ConsumeIntegralInRange(0, peer_ids - 1));
      a.offer_id = id_of('O', in_.ConsumeIntegralInRange(0, offer_ids - 1));
    }
    a.peer_id = id_of('P', in_.ConsumeIntegralInRange(0, peer_ids - 1));
    a.sdp = {R"({"type":"answer","sdp":"y"})"};
    tracker_.on_answer(conn, std::move(a), now_, out_);
    FUZZ_REQUIRE(out_.size() <= 1);
    if (!out_.empty()) FUZZ_REQUIRE(std::holds_alternative<wt::answer_relay>(out_[0].message));
  }

  void released() {
    std::vector<sw::released_peer> got;
    tracker_.take_released(got);
    for (const auto& r : got) FUZZ_REQUIRE(r.conn >= 1 && r.conn <= connections);
  }

  void scrapes() {
    std::vector<sw::binary_id> hashes;
    for (int n = in_.ConsumeIntegralInRange(0, 5); n > 0; --n) hashes.push_back(id_of('I', in_.ConsumeIntegralInRange(0, info_hashes)));
    std::vector<wt::scrape_file> files;
    tracker_.scrape(hashes, files);
    FUZZ_REQUIRE(files.size() == hashes.size());
    files.clear();
    tracker_.scrape_all(files);
    const auto totals = tracker_.totals();
    FUZZ_REQUIRE(files.size() == std::min(totals.swarms, tracker_.config().max_scrape_all));
    std::size_t peers = 0;
    for (const auto& s : tracker_.top_swarms(info_hashes + 1)) peers += s.seeders + s.leechers;
    FUZZ_REQUIRE(peers == totals.seeders + totals.leechers);
  }

  FuzzedDataProvider& in_;
  std::shared_ptr<sw::swarm_budget> budget_;  // a small cap on swarms: announces run into server_full
  sw::tracker tracker_;
  sw::time_ms now_ = 1'000'000;
  std::vector<sw::outgoing> out_;
  std::vector<relay_seen> relays_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  driver(in).run();
  return 0;
}
