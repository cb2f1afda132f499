// Randomized simulation of the tracker against a simple model of who is where.
//
// The model tracks (info_hash, peer_id) -> connection, seeder flag and last announce time, the
// download count of each swarm, and a log of every offer relay the tracker emitted. After every
// step the tracker's own invariants must hold, its totals must equal the model's, and every
// message it emitted must be explainable by the model. A peer_id moves to another connection
// only when its owner has been silent for interval_s plus the grace; before, the announce is
// refused and the pair released to the announcer.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "test_ids.hpp"
#include "server/swarm/tracker.hpp"

namespace {

namespace sw = swarmcoord::swarm;
namespace wt = swarmcoord::protocol::webtorrent;
using swarmcoord::protocol::json_text;
using sw::binary_id;
using sw::connection_id;
using sw::time_ms;

constexpr int connection_count = 20;
constexpr int info_hash_count = 5;
constexpr int peer_id_count = 30;

using swarmcoord::test::make_id;
binary_id info_hash_of(int n) { return make_id('I', n); }
binary_id peer_of(int n) { return make_id('P', n); }

sw::ip_address address_of(connection_id conn) {
  // Four /24s, so that locality has something to prefer.
  return sw::ip_address::v4(10, 0, static_cast<std::uint8_t>(conn % 4), static_cast<std::uint8_t>(conn));
}

using pair_key = std::pair<int, int>;  // (info_hash index, peer_id index)

struct model_peer {
  connection_id conn = 0;
  bool seeder = false;
  time_ms last_seen = 0;
  std::uint64_t incarnation = 0;  // a new one each time the pair (re)joins its swarm
};

struct model_offer {
  int info_hash = 0;
  int offerer = 0;
  std::uint64_t offerer_incarnation = 0;
  binary_id offer_id;
  json_text sdp;
  connection_id recipient_conn = 0;
  std::set<int> candidates;  // peer_ids on recipient_conn that may have been the recipient
  time_ms expires = 0;
  bool live = true;          // not yet answered, and its swarm has not been emptied
  bool answered = false;     // relayed an answer
};

class simulation {
 public:
  simulation(std::uint64_t seed, sw::tracker_config config) : config_(config), tracker_(config, seed), rng_(seed) {
    for (int p = 0; p < peer_id_count; ++p) home_[p] = pick_connection();
  }

  void run(int steps) {
    for (step_ = 0; step_ < steps; ++step_) {
      INFO("step " << step_ << ", now " << now_);
      const int roll = uniform(0, 99);
      if (roll < 45) random_announce();
      else if (roll < 70) random_answer();
      else if (roll < 77) random_close();
      else if (roll < 90) now_ += 5'000 * uniform(0, 6);  // steps that land exactly on the TTLs
      else if (roll < 95) expire();
      else check_scrapes();
      check_totals();
    }
  }

  std::size_t relays_seen() const { return offer_log_.size(); }
  std::size_t answers_relayed() const { return answers_relayed_; }
  std::size_t moves() const { return moves_; }
  std::size_t refusals() const { return refusals_; }
  std::size_t releases() const { return releases_; }
  std::size_t expired() const { return expired_; }

 private:
  time_ms owner_silence() const { return time_ms{config_.interval_s} * 1000 + config_.reannounce_grace_ms; }
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool chance(int percent) { return uniform(0, 99) < percent; }
  connection_id pick_connection() { return static_cast<connection_id>(uniform(1, connection_count)); }

  // The tracker reports exactly the pairs its model says changed hands or expired.
  void expect_released(const std::vector<std::tuple<connection_id, int, int>>& model) {
    std::vector<sw::released_peer> got;
    tracker_.take_released(got);
    using entry = std::tuple<connection_id, std::string, std::string>;
    std::vector<entry> expected, seen;
    for (const auto& [conn, ih, pid] : model) expected.emplace_back(conn, info_hash_of(ih).hex(), peer_of(pid).hex());
    for (const auto& r : got) seen.emplace_back(r.conn, r.info_hash.hex(), r.peer_id.hex());
    std::sort(expected.begin(), expected.end());
    std::sort(seen.begin(), seen.end());
    CHECK(seen == expected);
    releases_ += got.size();
  }
  std::pair<std::uint32_t, std::uint32_t> counts(int ih) const {
    std::uint32_t seeders = 0, leechers = 0;
    for (const auto& [key, p] : peers_)
      if (key.first == ih) (p.seeder ? seeders : leechers)++;
    return {seeders, leechers};
  }
  bool swarm_exists(int ih) const {
    auto [s, l] = counts(ih);
    return s + l > 0;
  }
  // The tracker forgets a swarm (its offers and download count) when its last peer leaves.
  void forget_empty_swarms() {
    for (int ih = 0; ih < info_hash_count; ++ih) {
      if (swarm_exists(ih)) continue;
      downloaded_[ih] = 0;
      for (auto& o : offer_log_)
        if (o.info_hash == ih) o.live = false;
    }
  }
  std::size_t unanswered_offers_of(int ih, int pid, std::uint64_t incarnation) const {
    return static_cast<std::size_t>(std::count_if(offer_log_.begin(), offer_log_.end(), [&](const model_offer& o) {
      return o.info_hash == ih && o.offerer == pid && o.offerer_incarnation == incarnation && !o.answered;
    }));
  }

  wt::announce_event random_event() {
    const int r = uniform(0, 99);
    if (r < 30) return wt::announce_event::none;
    if (r < 50) return wt::announce_event::started;
    if (r < 58) return wt::announce_event::update;
    if (r < 68) return wt::announce_event::completed;
    if (r < 84) return wt::announce_event::stopped;
    if (r < 92) return wt::announce_event::paused;
    return wt::announce_event::empty;
  }

  void random_announce() {
    const int ih = uniform(0, info_hash_count - 1);
    const int pid = uniform(0, peer_id_count - 1);
    if (chance(10)) home_[pid] = pick_connection();  // reconnects elsewhere
    const connection_id conn = chance(3) ? pick_connection() : home_[pid];

    wt::announce a;
    a.info_hash = info_hash_of(ih);
    a.peer_id = peer_of(pid);
    a.event = random_event();
    if (const int l = uniform(0, 3); l == 1) a.left = 0.0;
    else if (l == 2) a.left = 1000.0;
    if (a.event != wt::announce_event::completed && chance(60)) {
      const int n = uniform(1, 6);
      for (int i = 0; i < n; ++i, ++next_offer_)
        a.offers.push_back({make_id('O', next_offer_), {R"({"type":"offer","sdp":")" + std::to_string(next_offer_) + R"("})"}});
    }
    a.offers_skipped = static_cast<std::size_t>(uniform(0, 1));
    const auto offers = a.offers;
    const auto event = a.event;
    const auto left = a.left;
    const auto skipped = a.offers_skipped;
    const auto before = tracker_.counters();

    std::vector<sw::outgoing> out;
    tracker_.on_announce(conn, address_of(conn), std::move(a), now_, out);
    REQUIRE(tracker_.check_invariants() == "");
    const auto& after = tracker_.counters();

    const pair_key key{ih, pid};
    auto it = peers_.find(key);

    if (event == wt::announce_event::stopped) {
      // Only the owning connection may stop a peer; from anywhere else it is a no-op.
      if (it != peers_.end() && it->second.conn == conn) peers_.erase(it);
      forget_empty_swarms();
      REQUIRE(out.size() == 1);
      expect_response(out[0], conn, ih);
      CHECK(after.offers_relayed == before.offers_relayed);
      return;
    }

    // Another connection's peer_id: refused while its owner is alive, else moved (the owner
    // hears that it lost it).
    const bool other_owner = it != peers_.end() && it->second.conn != conn;
    if (other_owner && now_ - it->second.last_seen < owner_silence()) {
      REQUIRE(out.size() == 1);
      CHECK(out[0].to == conn);
      const auto* e = std::get_if<wt::request_error>(&out[0].message);
      REQUIRE(e != nullptr);
      CHECK(e->reason == wt::error_reason::peer_id_in_use);
      CHECK(e->info_hash == info_hash_of(ih));
      CHECK(after.errors[static_cast<std::size_t>(wt::error_reason::peer_id_in_use)] ==
            before.errors[static_cast<std::size_t>(wt::error_reason::peer_id_in_use)] + 1);
      CHECK(after.offers_relayed == before.offers_relayed);
      CHECK(after.offers_unrelayed - before.offers_unrelayed == offers.size() + skipped);
      expect_released({{conn, ih, pid}});
      ++refusals_;
      return;
    }
    const bool moving = other_owner;
    if (moving) expect_released({{it->second.conn, ih, pid}});
    else expect_released({});

    if (it == peers_.end()) {
      it = peers_.emplace(key, model_peer{conn, false, now_, ++incarnations_}).first;
    } else {
      if (moving) ++moves_;
      it->second.conn = conn;
      it->second.last_seen = now_;
    }
    model_peer& self = it->second;
    const std::size_t pending_before = unanswered_offers_of(ih, pid, self.incarnation);
    if (event == wt::announce_event::completed) {
      if (!self.seeder) ++downloaded_[ih];
      self.seeder = true;
    } else if (left) {
      self.seeder = *left == 0;
    }

    REQUIRE_FALSE(out.empty());
    expect_response(out[0], conn, ih);

    // Everything after the response is an offer relay of this announce, offers[i] to the i-th.
    std::size_t eligible = 0;
    for (const auto& [k, p] : peers_)
      if (k.first == ih && k != key && p.conn != conn) ++eligible;
    const std::size_t relays = out.size() - 1;
    const std::size_t most = std::min({offers.size(), config_.max_offers, eligible});
    CHECK(relays <= config_.max_offers);
    CHECK(relays <= most);
    if (pending_before + most <= config_.max_offers * 4) CHECK(relays == most);
    CHECK(after.offers_relayed - before.offers_relayed == relays);
    // Not relayed: the offers over the limit or without recipients, and the codec's skipped ones.
    CHECK(after.offers_unrelayed - before.offers_unrelayed == offers.size() - relays + skipped);

    std::map<connection_id, std::size_t> per_connection;
    for (std::size_t i = 0; i < relays; ++i) {
      const auto& o = out[i + 1];
      const auto* r = std::get_if<wt::offer_relay>(&o.message);
      REQUIRE(r != nullptr);
      CHECK(o.to != conn);  // never the announcer's own connection
      CHECK(r->info_hash == info_hash_of(ih));
      CHECK(r->peer_id == peer_of(pid));
      CHECK(r->offer_id == offers[i].offer_id);
      CHECK(r->sdp == offers[i].sdp);

      model_offer m;
      m.info_hash = ih;
      m.offerer = pid;
      m.offerer_incarnation = self.incarnation;
      m.offer_id = offers[i].offer_id;
      m.sdp = offers[i].sdp;
      m.recipient_conn = o.to;
      m.expires = now_ + config_.offer_ttl_ms;
      for (const auto& [k, p] : peers_)
        if (k.first == ih && k != key && p.conn == o.to) m.candidates.insert(k.second);
      CHECK_FALSE(m.candidates.empty());  // the recipient connection has a peer in this swarm
      CHECK(++per_connection[o.to] <= m.candidates.size());
      offer_log_.push_back(std::move(m));
    }
  }

  void expect_response(const sw::outgoing& o, connection_id conn, int ih) {
    REQUIRE(o.to == conn);
    const auto* r = std::get_if<wt::announce_response>(&o.message);
    REQUIRE(r != nullptr);
    CHECK(r->info_hash == info_hash_of(ih));
    CHECK(r->interval_s == config_.interval_s);
    auto [seeders, leechers] = counts(ih);
    CHECK(r->complete == seeders);
    CHECK(r->incomplete == leechers);
  }

  void random_answer() {
    if (offer_log_.empty()) return;
    const model_offer* pick = &offer_log_[static_cast<std::size_t>(uniform(0, static_cast<int>(offer_log_.size()) - 1))];
    // Prefer recent offers, which are more likely to still be answerable.
    if (chance(60)) {
      const int recent = std::min<int>(20, static_cast<int>(offer_log_.size()));
      pick = &offer_log_[offer_log_.size() - 1 - static_cast<std::size_t>(uniform(0, recent - 1))];
    }
    const std::size_t index = static_cast<std::size_t>(pick - offer_log_.data());
    const model_offer& o = *pick;

    int answerer = *std::next(o.candidates.begin(), uniform(0, static_cast<int>(o.candidates.size()) - 1));
    connection_id conn = o.recipient_conn;
    int to_peer = o.offerer;
    int ih = o.info_hash;
    binary_id oid = o.offer_id;
    bool bogus = false;
    if (chance(30)) {  // something about it is wrong
      bogus = true;
      switch (uniform(0, 4)) {
        case 0: conn = pick_connection(); bogus = conn != o.recipient_conn; break;
        case 1: answerer = uniform(0, peer_id_count - 1); bogus = o.candidates.count(answerer) == 0; break;
        case 2: oid = make_id('X', uniform(0, 1'000'000)); break;
        case 3: to_peer = uniform(0, peer_id_count - 1); bogus = to_peer != o.offerer; break;
        case 4: ih = (ih + 1) % info_hash_count; break;
      }
    }

    const auto before = tracker_.counters();
    std::vector<sw::outgoing> out;
    const json_text sdp{R"({"type":"answer","sdp":"a)" + std::to_string(step_) + R"("})"};
    tracker_.on_answer(conn, wt::answer{info_hash_of(ih), peer_of(answerer), peer_of(to_peer), oid, sdp}, now_, out);
    REQUIRE(tracker_.check_invariants() == "");
    const auto& after = tracker_.counters();
    const auto relayed = after.answers_relayed - before.answers_relayed;
    const auto unknown = after.answers_dropped_unknown_offer - before.answers_dropped_unknown_offer;
    const auto gone = after.answers_dropped_offerer_gone - before.answers_dropped_offerer_gone;
    REQUIRE(relayed + unknown + gone == 1);
    REQUIRE(out.size() == relayed);

    // What the model expects. The recipient of an offer is known only up to the peer_ids of
    // its connection, so with several candidates "unknown offer" is also acceptable.
    model_offer& m = offer_log_[index];
    const bool matches = !bogus && m.live && m.candidates.count(answerer) && now_ < m.expires;
    const bool certain = m.candidates.size() == 1;
    if (!matches) {
      CHECK(unknown == 1);
    } else if (certain) {
      CHECK(unknown == 0);
    } else if (unknown == 1) {
      m.candidates.erase(answerer);  // it was one of the others
    }
    if (unknown == 1) return;

    // The answer consumed a live offer that went to this answerer on this connection.
    REQUIRE(matches);
    m.live = false;
    m.candidates = {answerer};
    auto offerer = peers_.find({ih, to_peer});
    if (offerer == peers_.end()) {
      CHECK(gone == 1);
      return;
    }
    REQUIRE(relayed == 1);
    REQUIRE_FALSE(m.answered);
    m.answered = true;
    ++answers_relayed_;
    const auto* r = std::get_if<wt::answer_relay>(&out[0].message);
    REQUIRE(r != nullptr);
    CHECK(out[0].to == offerer->second.conn);
    CHECK(r->info_hash == info_hash_of(ih));
    CHECK(r->peer_id == peer_of(answerer));
    CHECK(r->offer_id == oid);
    CHECK(r->sdp == sdp);
    // A sign of life of the answerer, when it comes from the connection that owns it.
    if (auto a = peers_.find({ih, answerer}); a != peers_.end() && a->second.conn == conn) a->second.last_seen = now_;
  }

  void random_close() {
    const connection_id conn = pick_connection();
    tracker_.on_connection_closed(conn);
    REQUIRE(tracker_.check_invariants() == "");
    for (auto it = peers_.begin(); it != peers_.end();)
      it = it->second.conn == conn ? peers_.erase(it) : std::next(it);
    forget_empty_swarms();
  }

  void expire() {
    const auto before = tracker_.counters().peers_expired;
    tracker_.expire(now_);
    REQUIRE(tracker_.check_invariants() == "");
    std::size_t gone = 0;
    std::vector<std::tuple<connection_id, int, int>> released;
    for (auto it = peers_.begin(); it != peers_.end();) {
      if (now_ - it->second.last_seen >= config_.peer_ttl_ms) {
        released.emplace_back(it->second.conn, it->first.first, it->first.second);
        it = peers_.erase(it);
        ++gone;
      } else {
        ++it;
      }
    }
    forget_empty_swarms();
    expect_released(released);
    CHECK(tracker_.counters().peers_expired - before == gone);
    expired_ += gone;
  }

  void check_scrapes() {
    std::vector<binary_id> hashes;
    for (int ih = 0; ih < info_hash_count; ++ih) hashes.push_back(info_hash_of(ih));
    std::vector<wt::scrape_file> files;
    tracker_.scrape(hashes, files);
    REQUIRE(files.size() == hashes.size());
    for (int ih = 0; ih < info_hash_count; ++ih) {
      auto [seeders, leechers] = counts(ih);
      CHECK(files[static_cast<std::size_t>(ih)].complete == seeders);
      CHECK(files[static_cast<std::size_t>(ih)].incomplete == leechers);
      CHECK(files[static_cast<std::size_t>(ih)].downloaded == downloaded_[ih]);
    }
    files.clear();
    tracker_.scrape_all(files);
    std::size_t swarms = 0;
    for (int ih = 0; ih < info_hash_count; ++ih) swarms += swarm_exists(ih);
    CHECK(files.size() == std::min(swarms, config_.max_scrape_all));
    for (const auto& f : files) {
      int ih = -1;
      for (int i = 0; i < info_hash_count; ++i)
        if (info_hash_of(i) == f.info_hash) ih = i;
      REQUIRE(ih >= 0);
      auto [seeders, leechers] = counts(ih);
      CHECK(f.complete == seeders);
      CHECK(f.incomplete == leechers);
    }
  }

  void check_totals() {
    auto t = tracker_.totals();
    std::size_t swarms = 0, seeders = 0, leechers = 0;
    for (int ih = 0; ih < info_hash_count; ++ih) {
      auto [s, l] = counts(ih);
      swarms += s + l > 0;
      seeders += s;
      leechers += l;
    }
    REQUIRE(t.swarms == swarms);
    REQUIRE(t.seeders == seeders);
    REQUIRE(t.leechers == leechers);
  }

  sw::tracker_config config_;
  sw::tracker tracker_;
  std::mt19937_64 rng_;
  time_ms now_ = 5'000'000;
  int step_ = 0;
  int next_offer_ = 0;
  std::uint64_t incarnations_ = 0;
  std::map<int, connection_id> home_;
  std::map<pair_key, model_peer> peers_;
  std::map<int, std::uint64_t> downloaded_;
  std::vector<model_offer> offer_log_;
  std::size_t answers_relayed_ = 0, moves_ = 0, refusals_ = 0, releases_ = 0, expired_ = 0;
};

sw::tracker_config simulation_config() {
  sw::tracker_config c;
  c.interval_s = 30;  // with the grace, an owner silent for 45 s may lose its peer_id
  c.reannounce_grace_ms = 15'000;
  c.max_offers = 3;
  c.offer_ttl_ms = 60'000;
  c.peer_ttl_ms = 120'000;
  c.max_scrape_all = 3;
  return c;
}

}  // namespace

TEST_CASE("randomized tracker simulation agrees with a model of swarms, offers and answers") {
  const auto seed = GENERATE(1ull, 2ull, 3ull);
  INFO("seed " << seed);
  simulation sim(seed, simulation_config());
  sim.run(3000);
  // The run exercised what it is meant to exercise.
  CHECK(sim.relays_seen() > 200);
  CHECK(sim.answers_relayed() > 20);
  CHECK(sim.moves() > 5);
  CHECK(sim.refusals() > 5);
  CHECK(sim.releases() > sim.moves() + sim.refusals());  // moves, refusals and expiries
  CHECK(sim.expired() > 5);
}

TEST_CASE("randomized tracker simulation with generous limits") {
  sw::tracker_config c = simulation_config();
  c.max_offers = 10;
  c.max_scrape_all = 1000;
  c.offer_ttl_ms = 120'000;
  c.peer_ttl_ms = 300'000;
  simulation sim(99, c);
  sim.run(3000);
  CHECK(sim.relays_seen() > 200);
  CHECK(sim.answers_relayed() > 20);
}
