// The tracker domain (one shard): swarms, offers and answers, expiry, with a fake clock.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test_ids.hpp"
#include "server/swarm/tracker.hpp"

namespace {

namespace sw = swarmcoord::swarm;
namespace wt = swarmcoord::protocol::webtorrent;
using swarmcoord::protocol::json_text;
using sw::binary_id;
using sw::connection_id;
using sw::ip_address;

using swarmcoord::test::make_id;
binary_id info_hash(int n) { return make_id('I', n); }
binary_id peer(int n) { return make_id('P', n); }
binary_id offer_id(int n) { return make_id('O', n); }

// By default every connection sits in its own /24, so locality plays no part.
ip_address addr(connection_id conn) {
  return ip_address::v4(172, static_cast<std::uint8_t>(16 + (conn >> 8) % 16),
                        static_cast<std::uint8_t>(conn & 0xFF), 1);
}

json_text sdp_for(int n) { return {R"({"type":"offer","sdp":"offer-sdp-)" + std::to_string(n) + R"("})"}; }
json_text answer_sdp(int n) { return {R"({"type":"answer","sdp":"answer-sdp-)" + std::to_string(n) + R"("})"}; }

template <class T>
std::vector<std::pair<connection_id, T>> of_type(const std::vector<sw::outgoing>& out) {
  std::vector<std::pair<connection_id, T>> found;
  for (const auto& o : out)
    if (auto* m = std::get_if<T>(&o.message)) found.emplace_back(o.to, *m);
  return found;
}

struct harness {
  sw::tracker t;
  sw::time_ms now = 1'000'000;
  int next_offer = 0;
  std::vector<wt::offer> last_offers;  // the offers of the latest announce, as sent

  explicit harness(sw::tracker_config config = {}, std::uint64_t seed = 42) : t(config, seed) {}

  std::vector<sw::outgoing> announce(connection_id conn, const binary_id& ih, const binary_id& pid,
                                     wt::announce_event event = wt::announce_event::started,
                                     std::optional<double> left = std::nullopt, int offers = 0,
                                     std::optional<ip_address> from = std::nullopt) {
    wt::announce a;
    a.info_hash = ih;
    a.peer_id = pid;
    a.event = event;
    a.left = left;
    for (int i = 0; i < offers; ++i, ++next_offer) a.offers.push_back({offer_id(next_offer), sdp_for(next_offer)});
    last_offers = a.offers;
    std::vector<sw::outgoing> out;
    t.on_announce(conn, from.value_or(addr(conn)), std::move(a), now, out);
    REQUIRE(t.check_invariants() == "");
    return out;
  }

  std::vector<sw::outgoing> offer(connection_id conn, const binary_id& ih, const binary_id& pid, int offers,
                                  std::optional<ip_address> from = std::nullopt) {
    return announce(conn, ih, pid, wt::announce_event::none, std::nullopt, offers, from);
  }

  std::vector<sw::outgoing> answer(connection_id conn, const binary_id& ih, const binary_id& answerer,
                                   const binary_id& offerer, const binary_id& oid, int n = 0) {
    std::vector<sw::outgoing> out;
    t.on_answer(conn, wt::answer{ih, answerer, offerer, oid, answer_sdp(n)}, now, out);
    REQUIRE(t.check_invariants() == "");
    return out;
  }

  void close(connection_id conn) {
    t.on_connection_closed(conn);
    REQUIRE(t.check_invariants() == "");
  }

  void expire() {
    t.expire(now);
    REQUIRE(t.check_invariants() == "");
  }

  // How long an owner must not announce its pair before another connection may take it.
  sw::time_ms owner_silence() const {
    return sw::time_ms{t.config().interval_s} * 1000 + t.config().reannounce_grace_ms;
  }

  wt::scrape_file scrape(const binary_id& ih) const {
    std::vector<wt::scrape_file> files;
    t.scrape({ih}, files);
    REQUIRE(files.size() == 1);
    CHECK(files[0].info_hash == ih);
    return files[0];
  }
};

// The single announce response of an announce, which must go back to the announcer.
wt::announce_response response_of(const std::vector<sw::outgoing>& out, connection_id conn) {
  auto responses = of_type<wt::announce_response>(out);
  REQUIRE(responses.size() == 1);
  CHECK(responses[0].first == conn);
  return responses[0].second;
}

void check_counts(const wt::announce_response& r, std::uint32_t complete, std::uint32_t incomplete) {
  CHECK(r.complete == complete);
  CHECK(r.incomplete == incomplete);
}

void check_scrape(const harness& h, const binary_id& ih, std::uint32_t complete, std::uint32_t incomplete,
                  std::uint64_t downloaded) {
  auto f = h.scrape(ih);
  CHECK(f.complete == complete);
  CHECK(f.incomplete == incomplete);
  CHECK(f.downloaded == downloaded);
}

// A (conn 1) has relayed one offer to B (conn 2), the only other peer of the swarm.
struct one_offer_relayed {
  harness h;
  binary_id ih = info_hash(1), a = peer(1), b = peer(2);
  binary_id oid;
  explicit one_offer_relayed(sw::tracker_config config = {}) : h(config) {
    h.announce(2, ih, b);
    auto out = h.offer(1, ih, a, 1);
    auto relays = of_type<wt::offer_relay>(out);
    REQUIRE(relays.size() == 1);
    REQUIRE(relays[0].first == 2);
    oid = relays[0].second.offer_id;
  }
};

}  // namespace

TEST_CASE("announce responses carry the swarm counts and the configured interval") {
  sw::tracker_config config;
  config.interval_s = 333;
  harness h(config);
  const auto ih = info_hash(1);

  auto r = response_of(h.announce(1, ih, peer(1)), 1);
  CHECK(r.info_hash == ih);
  CHECK(r.interval_s == 333);
  check_counts(r, 0, 1);

  check_counts(response_of(h.announce(2, ih, peer(2), wt::announce_event::started, 0.0), 2), 1, 1);
  check_counts(response_of(h.announce(3, ih, peer(3), wt::announce_event::started, 10.0), 3), 1, 2);
  // A periodic re-announce changes nothing.
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::none), 1), 1, 2);
  // Another swarm is counted separately.
  check_counts(response_of(h.announce(1, info_hash(2), peer(1)), 1), 0, 1);

  auto totals = h.t.totals();
  CHECK(totals.swarms == 2);
  CHECK(totals.seeders == 1);
  CHECK(totals.leechers == 3);
}

TEST_CASE("offers go only to other peers of the swarm") {
  harness h;
  const auto ih = info_hash(1);

  SECTION("alone in the swarm: nothing is relayed") {
    auto out = h.offer(1, ih, peer(1), 5);
    CHECK(of_type<wt::offer_relay>(out).empty());
    check_counts(response_of(out, 1), 0, 1);
    CHECK(h.t.counters().offers_unrelayed == 5);
    CHECK(h.t.counters().offers_relayed == 0);
  }
  SECTION("three others and five offers: one offer to each of the three") {
    for (int i = 2; i <= 4; ++i) h.announce(static_cast<connection_id>(i), ih, peer(i));
    h.announce(9, info_hash(2), peer(9));  // another swarm never gets offers of this one
    auto out = h.offer(1, ih, peer(1), 5);
    auto relays = of_type<wt::offer_relay>(out);
    REQUIRE(relays.size() == 3);
    std::set<connection_id> to;
    for (const auto& [conn, r] : relays) {
      to.insert(conn);
      CHECK(r.info_hash == ih);
      CHECK(r.peer_id == peer(1));
    }
    CHECK(to == std::set<connection_id>{2, 3, 4});
    CHECK(h.t.counters().offers_relayed == 3);
    CHECK(h.t.counters().offers_unrelayed == 2);
    CHECK(h.t.totals().pending_offers == 3);
  }
}

TEST_CASE("no more than max_offers offers are relayed per announce") {
  sw::tracker_config config;
  config.max_offers = 4;
  harness h(config);
  const auto ih = info_hash(1);
  for (int i = 2; i <= 21; ++i) h.announce(static_cast<connection_id>(i), ih, peer(i));
  auto out = h.offer(1, ih, peer(1), 10);
  auto relays = of_type<wt::offer_relay>(out);
  CHECK(relays.size() == 4);
  std::set<connection_id> to;
  for (const auto& [conn, r] : relays) to.insert(conn);
  CHECK(to.size() == 4);
  CHECK(to.count(1) == 0);
  CHECK(h.t.counters().offers_unrelayed == 6);
}

TEST_CASE("offers never go to another peer_id of the announcer's own connection") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1));
  h.announce(1, ih, peer(2));  // same socket, second peer_id (p2p-media-loader style)
  h.announce(1, ih, peer(3));
  h.announce(2, ih, peer(4));
  for (int round = 0; round < 20; ++round) {
    auto out = h.offer(1, ih, peer(1 + round % 3), 5);
    auto relays = of_type<wt::offer_relay>(out);
    REQUIRE(relays.size() == 1);
    CHECK(relays[0].first == 2);
    CHECK(relays[0].second.peer_id == peer(1 + round % 3));
  }
  // And the other direction: peer 4's offers reach one of conn 1's peers... once per peer_id.
  auto out = h.offer(2, ih, peer(4), 5);
  auto relays = of_type<wt::offer_relay>(out);
  CHECK(relays.size() == 3);
  for (const auto& [conn, r] : relays) CHECK(conn == 1);
}

TEST_CASE("peer i of the chosen recipients gets offers[i], each recipient one offer") {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    harness h({}, seed);
    const auto ih = info_hash(1);
    for (int i = 2; i <= 8; ++i) h.announce(static_cast<connection_id>(i), ih, peer(i));
    auto out = h.offer(1, ih, peer(1), 5);
    auto relays = of_type<wt::offer_relay>(out);
    REQUIRE(relays.size() == 5);
    std::set<connection_id> recipients;
    for (std::size_t i = 0; i < relays.size(); ++i) {
      CHECK(relays[i].second.offer_id == h.last_offers[i].offer_id);
      CHECK(relays[i].second.sdp == h.last_offers[i].sdp);
      CHECK(relays[i].second.peer_id == peer(1));
      recipients.insert(relays[i].first);
    }
    CHECK(recipients.size() == 5);
    CHECK(recipients.count(1) == 0);
  }
}

namespace {

// Five peers in 10.0.0.0/24 (connections 1..5) and fifty elsewhere, each in its own /24.
harness locality_swarm(std::uint64_t seed) {
  harness h({}, seed);
  for (connection_id c = 1; c <= 5; ++c)
    h.announce(c, info_hash(1), peer(static_cast<int>(c)), wt::announce_event::started, std::nullopt, 0,
               ip_address::v4(10, 0, 0, static_cast<std::uint8_t>(c)));
  for (connection_id c = 100; c < 150; ++c)
    h.announce(c, info_hash(1), peer(static_cast<int>(c)), wt::announce_event::started, std::nullopt, 0,
               ip_address::v4(192, 168, static_cast<std::uint8_t>(c), 7));
  return h;
}

bool is_local(connection_id c) { return c >= 1 && c <= 5; }

}  // namespace

TEST_CASE("offers prefer the announcer's own /24, then random others") {
  const auto ih = info_hash(1);
  SECTION("three offers all go to three of the five local peers") {
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
      auto h = locality_swarm(seed);
      auto out = h.offer(999, ih, peer(999), 3, ip_address::v4(10, 0, 0, 9));
      auto relays = of_type<wt::offer_relay>(out);
      REQUIRE(relays.size() == 3);
      std::set<connection_id> to;
      for (const auto& [conn, r] : relays) {
        CHECK(is_local(conn));
        to.insert(conn);
      }
      CHECK(to.size() == 3);
    }
  }
  SECTION("eight offers: all five local peers, then three random others") {
    std::set<connection_id> remote_recipients;
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
      auto h = locality_swarm(seed);
      auto out = h.offer(999, ih, peer(999), 8, ip_address::v4(10, 0, 0, 9));
      auto relays = of_type<wt::offer_relay>(out);
      REQUIRE(relays.size() == 8);
      std::set<connection_id> to_local, to_remote;
      for (const auto& [conn, r] : relays) (is_local(conn) ? to_local : to_remote).insert(conn);
      CHECK(to_local == std::set<connection_id>{1, 2, 3, 4, 5});
      CHECK(to_remote.size() == 3);
      remote_recipients.insert(to_remote.begin(), to_remote.end());
    }
    // The others are chosen at random, not always the same three.
    CHECK(remote_recipients.size() > 6);
  }
  SECTION("an announcer elsewhere gets no preference for 10.0.0.0/24") {
    std::size_t local_hits = 0;
    for (std::uint64_t seed = 1; seed <= 20; ++seed) {
      auto h = locality_swarm(seed);
      auto out = h.offer(999, ih, peer(999), 5, ip_address::v4(203, 0, 113, 9));
      for (const auto& [conn, r] : of_type<wt::offer_relay>(out)) local_hits += is_local(conn);
    }
    // 100 offers over 55 peers of which 5 are local: about 9 expected, never anywhere near 100.
    CHECK(local_hits < 40);
  }
  SECTION("IPv6 peers group by /48") {
    for (std::uint64_t seed = 1; seed <= 10; ++seed) {
      auto h = locality_swarm(seed);
      for (int i = 0; i < 3; ++i)
        h.announce(static_cast<connection_id>(200 + i), ih, peer(200 + i), wt::announce_event::started,
                   std::nullopt, 0, ip_address::parse("2001:db8:7:" + std::to_string(i + 1) + "::1"));
      auto out = h.offer(998, ih, peer(998), 3, ip_address::parse("2001:db8:7:ffff::9"));
      auto relays = of_type<wt::offer_relay>(out);
      REQUIRE(relays.size() == 3);
      for (const auto& [conn, r] : relays) CHECK((conn >= 200 && conn < 203));
    }
  }
}

TEST_CASE("a peer that reconnects from another network is near its new /24") {
  const auto ih = info_hash(1);
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    harness h({}, seed);
    for (connection_id c = 100; c < 130; ++c) h.announce(c, ih, peer(static_cast<int>(c)));
    // Peer 1 first announces from 192.168.1.1, falls silent, then reconnects from 10.0.0.1.
    h.announce(1, ih, peer(1), wt::announce_event::started, std::nullopt, 0, ip_address::v4(192, 168, 1, 1));
    h.now += h.owner_silence();
    h.announce(2, ih, peer(1), wt::announce_event::none, std::nullopt, 0, ip_address::v4(10, 0, 0, 1));
    auto out = h.offer(999, ih, peer(999), 1, ip_address::v4(10, 0, 0, 9));
    auto relays = of_type<wt::offer_relay>(out);
    REQUIRE(relays.size() == 1);
    CHECK(relays[0].first == 2);
  }
}

TEST_CASE("an answer to an offer relayed to the answerer is relayed to the offerer") {
  one_offer_relayed s;
  auto& h = s.h;
  h.now += 5'000;
  auto out = h.answer(2, s.ih, s.b, s.a, s.oid, 77);
  auto relays = of_type<wt::answer_relay>(out);
  REQUIRE(relays.size() == 1);
  REQUIRE(out.size() == 1);
  CHECK(relays[0].first == 1);
  CHECK(relays[0].second.info_hash == s.ih);
  CHECK(relays[0].second.peer_id == s.b);
  CHECK(relays[0].second.offer_id == s.oid);
  CHECK(relays[0].second.sdp == answer_sdp(77));
  CHECK(h.t.counters().answers_relayed == 1);
  CHECK(h.t.totals().pending_offers == 0);

  SECTION("a replayed answer after the offer was consumed is dropped") {
    CHECK(h.answer(2, s.ih, s.b, s.a, s.oid).empty());
    CHECK(h.t.counters().answers_relayed == 1);
    CHECK(h.t.counters().answers_dropped_unknown_offer == 1);
  }
}

TEST_CASE("answers that do not match a relayed offer are dropped and counted") {
  one_offer_relayed s;
  auto& h = s.h;
  h.announce(3, s.ih, peer(3));  // a third peer, which never got the offer
  const auto& c = h.t.counters();

  SECTION("expired offer: the boundary is exactly offer_ttl") {
    h.now += h.t.config().offer_ttl_ms;
    CHECK(h.answer(2, s.ih, s.b, s.a, s.oid).empty());
    CHECK(c.answers_dropped_unknown_offer == 1);
    CHECK(c.answers_relayed == 0);
  }
  SECTION("just before expiry the answer still goes through") {
    h.now += h.t.config().offer_ttl_ms - 1;
    CHECK(of_type<wt::answer_relay>(h.answer(2, s.ih, s.b, s.a, s.oid)).size() == 1);
    CHECK(c.answers_relayed == 1);
  }
  SECTION("wrong answerer, and the offer is still there for the right one") {
    CHECK(h.answer(3, s.ih, peer(3), s.a, s.oid).empty());
    CHECK(h.answer(3, s.ih, s.b, s.a, s.oid).empty());  // right peer_id, wrong socket
    CHECK(c.answers_dropped_unknown_offer == 2);
    CHECK(of_type<wt::answer_relay>(h.answer(2, s.ih, s.b, s.a, s.oid)).size() == 1);
    CHECK(c.answers_relayed == 1);
  }
  SECTION("wrong connection of the right answerer") {
    CHECK(h.answer(7, s.ih, s.b, s.a, s.oid).empty());
    CHECK(c.answers_dropped_unknown_offer == 1);
  }
  SECTION("unknown offer_id") {
    CHECK(h.answer(2, s.ih, s.b, s.a, offer_id(12345)).empty());
    CHECK(c.answers_dropped_unknown_offer == 1);
  }
  SECTION("to_peer_id of a peer that did not make the offer") {
    CHECK(h.answer(2, s.ih, s.b, peer(3), s.oid).empty());
    CHECK(c.answers_dropped_unknown_offer == 1);
  }
  SECTION("unknown swarm") {
    CHECK(h.answer(2, info_hash(99), s.b, s.a, s.oid).empty());
    CHECK(c.answers_dropped_unknown_offer == 1);
    CHECK(h.t.totals().swarms == 1);  // an answer never creates a swarm
  }
  SECTION("offerer stopped") {
    h.announce(1, s.ih, s.a, wt::announce_event::stopped);
    CHECK(h.answer(2, s.ih, s.b, s.a, s.oid).empty());
    CHECK(c.answers_dropped_offerer_gone == 1);
    CHECK(c.answers_dropped_unknown_offer == 0);
  }
  SECTION("offerer's connection closed") {
    h.close(1);
    CHECK(h.answer(2, s.ih, s.b, s.a, s.oid).empty());
    CHECK(c.answers_dropped_offerer_gone == 1);
  }
  CHECK(c.answers_relayed + c.answers_dropped_unknown_offer + c.answers_dropped_offerer_gone >= 1);
}

TEST_CASE("an answer goes to the connection that owns the offerer's peer_id") {
  sw::tracker_config config;
  config.interval_s = 20;  // a silence shorter than offer_ttl, so that the offer is still live
  config.reannounce_grace_ms = 10'000;
  one_offer_relayed s(config);
  auto& h = s.h;
  // Socket 5 claims A's peer_id while socket 1 is alive: refused, and A's answer stays A's.
  h.announce(5, s.ih, s.a, wt::announce_event::none);
  auto out = h.answer(2, s.ih, s.b, s.a, s.oid);
  auto relays = of_type<wt::answer_relay>(out);
  REQUIRE(relays.size() == 1);
  CHECK(relays[0].first == 1);

  // A fell silent and reconnected on socket 5: answers to its offers follow it there.
  const auto second = of_type<wt::offer_relay>(h.offer(1, s.ih, s.a, 1));
  REQUIRE(second.size() == 1);
  REQUIRE(h.owner_silence() < h.t.config().offer_ttl_ms);
  h.now += h.owner_silence();
  h.announce(5, s.ih, s.a, wt::announce_event::none);
  relays = of_type<wt::answer_relay>(h.answer(2, s.ih, s.b, s.a, second[0].second.offer_id));
  REQUIRE(relays.size() == 1);
  CHECK(relays[0].first == 5);
}

TEST_CASE("offers expire after offer_ttl") {
  one_offer_relayed s;
  auto& h = s.h;
  CHECK(h.t.totals().pending_offers == 1);
  h.now += h.t.config().offer_ttl_ms - 1;
  h.expire();
  CHECK(h.t.totals().pending_offers == 1);
  h.now += 1;
  h.expire();
  CHECK(h.t.totals().pending_offers == 0);
  CHECK(h.answer(2, s.ih, s.b, s.a, s.oid).empty());
}

TEST_CASE("peers expire after peer_ttl without an announce, and empty swarms go") {
  harness h;
  const auto ttl = h.t.config().peer_ttl_ms;
  const auto start = h.now;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1));
  h.announce(2, ih, peer(2));
  h.announce(2, info_hash(2), peer(2));
  h.now = start + 100'000;
  h.announce(1, ih, peer(1), wt::announce_event::none);  // refreshes peer 1 only

  h.now = start + ttl - 1;
  h.expire();
  check_scrape(h, ih, 0, 2, 0);
  CHECK(h.t.counters().peers_expired == 0);

  h.now = start + ttl;
  h.expire();
  check_scrape(h, ih, 0, 1, 0);
  check_scrape(h, info_hash(2), 0, 0, 0);
  CHECK(h.t.counters().peers_expired == 2);
  CHECK(h.t.totals().swarms == 1);

  h.now = start + 100'000 + ttl;
  h.expire();
  CHECK(h.t.counters().peers_expired == 3);
  CHECK(h.t.totals().swarms == 0);
  CHECK(h.t.totals().leechers == 0);

  // Closing the sockets of expired peers is harmless, and they can come back.
  h.close(1);
  h.close(2);
  check_counts(response_of(h.announce(2, ih, peer(2)), 2), 0, 1);
}

TEST_CASE("closing a connection removes every peer_id and info_hash announced on it") {
  harness h;
  h.announce(1, info_hash(1), peer(1));
  h.announce(1, info_hash(1), peer(2));
  h.announce(1, info_hash(2), peer(1));
  h.announce(1, info_hash(3), peer(3));
  h.announce(2, info_hash(1), peer(9));
  CHECK(h.t.totals().swarms == 3);
  CHECK(h.t.totals().leechers == 5);

  h.close(1);
  check_scrape(h, info_hash(1), 0, 1, 0);
  check_scrape(h, info_hash(2), 0, 0, 0);
  check_scrape(h, info_hash(3), 0, 0, 0);
  CHECK(h.t.totals().swarms == 1);
  CHECK(h.t.totals().leechers == 1);

  h.close(1);  // twice is harmless
  h.close(42);  // never seen
  h.close(2);
  CHECK(h.t.totals().swarms == 0);
}

// The refusal of an announce of someone else's peer_id: a warning with the info_hash (the
// client keeps its socket), the pair released to the announcer, counted.
void check_refused(const std::vector<sw::outgoing>& out, connection_id conn, const binary_id& ih) {
  REQUIRE(out.size() == 1);
  CHECK(out[0].to == conn);
  const auto* e = std::get_if<wt::request_error>(&out[0].message);
  REQUIRE(e);
  CHECK(e->reason == wt::error_reason::peer_id_in_use);
  CHECK(e->info_hash == ih);
  CHECK(e->action == "announce");
  CHECK(wt::encode(out[0].message).find(R"("failure reason":"peer_id is in use by another connection")") !=
        std::string::npos);
}

TEST_CASE("another connection can't take over, stop or answer for a peer_id whose owner is alive") {
  harness h;
  const auto ih = info_hash(1);
  const auto a = peer(1), b = peer(2), c = peer(3);
  h.announce(1, ih, a);  // A on socket 1
  h.announce(2, ih, b);  // B on socket 2 saw A's peer_id in an offer
  h.announce(3, ih, c);  // C on socket 3

  // B announces A's peer_id, with offers: refused, nothing relayed, counted.
  const auto unrelayed = h.t.counters().offers_unrelayed;
  auto out = h.announce(2, ih, a, wt::announce_event::none, std::nullopt, 3);
  check_refused(out, 2, ih);
  CHECK(h.t.counters().errors[static_cast<std::size_t>(wt::error_reason::peer_id_in_use)] == 1);
  CHECK(h.t.counters().offers_unrelayed == unrelayed + 3);
  CHECK(h.t.counters().offers_relayed == 0);
  std::vector<sw::released_peer> released;
  h.t.take_released(released);
  REQUIRE(released.size() == 1);  // socket 2 counted the pair when it sent the announce
  CHECK(released[0].conn == 2);
  CHECK(released[0].peer_id == a);
  // Every event is refused alike, and none changes A: completed makes no seeder.
  check_refused(h.announce(2, ih, a, wt::announce_event::completed, 0.0), 2, ih);
  check_refused(h.announce(2, ih, a, wt::announce_event::started), 2, ih);
  check_scrape(h, ih, 0, 3, 0);

  // C's offers still reach A on socket 1 (and B on socket 2): over many rounds, never A via 2.
  std::set<connection_id> reached;
  for (int round = 0; round < 20; ++round) {
    for (const auto& [conn, r] : of_type<wt::offer_relay>(h.offer(3, ih, c, 2))) {
      reached.insert(conn);
      CHECK(r.peer_id == c);
    }
  }
  CHECK(reached == std::set<connection_id>{1, 2});

  // B's stopped for A's peer_id is answered and changes nothing.
  check_counts(response_of(h.announce(2, ih, a, wt::announce_event::stopped), 2), 0, 3);

  // An answer to A's offer goes to socket 1, the owner of A.
  auto relays = of_type<wt::offer_relay>(h.offer(1, ih, a, 1));
  REQUIRE(relays.size() == 1);
  const auto to = relays[0].first;
  auto answers = of_type<wt::answer_relay>(h.answer(to, ih, to == 2 ? b : c, a, relays[0].second.offer_id));
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].first == 1);
  CHECK(h.t.check_invariants().empty());
}

TEST_CASE("a reconnecting client takes its peer_id once the old socket closed") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1));
  check_refused(h.announce(2, ih, peer(1), wt::announce_event::none), 2, ih);
  h.close(1);  // the transport closed socket 1 (by the client, or by the keep-alive)
  check_counts(response_of(h.announce(2, ih, peer(1), wt::announce_event::none), 2), 0, 1);

  // Offers to the peer go to its new socket.
  auto relays = of_type<wt::offer_relay>(h.offer(3, ih, peer(3), 1));
  REQUIRE(relays.size() == 1);
  CHECK(relays[0].first == 2);

  h.close(2);
  check_scrape(h, ih, 0, 1, 0);  // only peer 3 is left
  h.close(3);
  CHECK(h.t.totals().swarms == 0);
}

TEST_CASE("an owner silent for interval_s plus the grace loses its peer_id to another connection") {
  sw::tracker_config config;
  config.interval_s = 120;
  config.reannounce_grace_ms = 90'000;
  harness h(config);
  const auto ih = info_hash(1);
  REQUIRE(h.owner_silence() == 210'000);
  h.announce(1, ih, peer(1));
  h.announce(4, ih, peer(4));

  // Announces of the owner keep it alive, answers from it too; the silence counts from the last.
  h.now += h.owner_silence() - 1;
  h.announce(1, ih, peer(1), wt::announce_event::none);
  h.now += h.owner_silence() - 1;
  check_refused(h.announce(2, ih, peer(1), wt::announce_event::none), 2, ih);
  // A relayed offer answered by peer 1 from its own socket is a sign of life...
  auto relays = of_type<wt::offer_relay>(h.offer(4, ih, peer(4), 1));
  REQUIRE(relays.size() == 1);
  REQUIRE(relays[0].first == 1);
  REQUIRE(of_type<wt::answer_relay>(h.answer(1, ih, peer(1), peer(4), relays[0].second.offer_id)).size() == 1);
  h.now += h.owner_silence() - 1;
  check_refused(h.announce(2, ih, peer(1), wt::announce_event::none), 2, ih);
  // ...and a refused announce is none.
  h.now += 1;
  std::vector<sw::released_peer> released;
  h.t.take_released(released);
  released.clear();
  check_counts(response_of(h.announce(2, ih, peer(1), wt::announce_event::none), 2), 0, 2);

  // Socket 1 hears it lost the pair; from now on it is the one refused.
  h.t.take_released(released);
  REQUIRE(released.size() == 1);
  CHECK(released[0].conn == 1);
  check_refused(h.announce(1, ih, peer(1), wt::announce_event::none), 1, ih);
  relays = of_type<wt::offer_relay>(h.offer(4, ih, peer(4), 1));
  REQUIRE(relays.size() == 1);
  CHECK(relays[0].first == 2);
  // Closing socket 1 no longer touches the peer.
  h.close(1);
  check_scrape(h, ih, 0, 2, 0);
  CHECK(h.t.counters().errors[static_cast<std::size_t>(wt::error_reason::peer_id_in_use)] == 3);
}

TEST_CASE("with no grace, an owner that missed one re-announce interval can be taken over") {
  sw::tracker_config config;
  config.interval_s = 30;
  config.reannounce_grace_ms = 0;
  harness h(config);
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1));
  h.now += 29'999;
  check_refused(h.announce(2, ih, peer(1)), 2, ih);
  h.now += 1;
  check_counts(response_of(h.announce(2, ih, peer(1)), 2), 0, 1);
}

TEST_CASE("stopped removes the peer and responds with the counts after removal") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1), wt::announce_event::started, 0.0);
  h.announce(2, ih, peer(2));
  h.announce(3, ih, peer(3));

  auto out = h.announce(2, ih, peer(2), wt::announce_event::stopped);
  CHECK(out.size() == 1);
  check_counts(response_of(out, 2), 1, 1);

  // Stopping an unknown peer changes nothing and still answers.
  check_counts(response_of(h.announce(9, ih, peer(9), wt::announce_event::stopped), 9), 1, 1);
  // Stopping in an unknown swarm answers zeros and creates nothing.
  check_counts(response_of(h.announce(9, info_hash(9), peer(9), wt::announce_event::stopped), 9), 0, 0);
  CHECK(h.t.totals().swarms == 1);

  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::stopped), 1), 0, 1);
  check_counts(response_of(h.announce(3, ih, peer(3), wt::announce_event::stopped), 3), 0, 0);
  CHECK(h.t.totals().swarms == 0);

  // A stopped peer can rejoin.
  check_counts(response_of(h.announce(2, ih, peer(2)), 2), 0, 1);
}

TEST_CASE("stopped from another connection leaves the peer in place") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1), wt::announce_event::started);
  h.announce(2, ih, peer(2), wt::announce_event::started);
  // Connection 2 knows peer 1's id (it travels in offers) but does not own it.
  check_counts(response_of(h.announce(2, ih, peer(1), wt::announce_event::stopped), 2), 0, 2);
  CHECK(h.t.totals().leechers == 2);
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::stopped), 1), 0, 1);
  CHECK(h.t.check_invariants().empty());
}

TEST_CASE("stopped with offers relays nothing") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1));
  h.announce(2, ih, peer(2));
  auto out = h.announce(2, ih, peer(2), wt::announce_event::stopped, std::nullopt, 3);
  CHECK(of_type<wt::offer_relay>(out).empty());
  CHECK(h.t.counters().offers_relayed == 0);
}

TEST_CASE("completed makes a seeder and counts a download once") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(1, ih, peer(1), wt::announce_event::started, 1000.0);
  h.announce(2, ih, peer(2));
  check_scrape(h, ih, 0, 2, 0);

  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::completed, 0.0), 1), 1, 1);
  check_scrape(h, ih, 1, 1, 1);

  // A repeated completed from a seeder is not another download.
  h.announce(1, ih, peer(1), wt::announce_event::completed);
  check_scrape(h, ih, 1, 1, 1);

  // A peer whose first announce is completed is a seeder and a download.
  h.announce(3, ih, peer(3), wt::announce_event::completed);
  check_scrape(h, ih, 2, 1, 2);

  // The download count survives the seeders leaving.
  h.close(1);
  h.close(3);
  check_scrape(h, ih, 0, 1, 2);
}

TEST_CASE("left == 0 makes a seeder without counting a download, left > 0 a leecher again") {
  harness h;
  const auto ih = info_hash(1);
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::started, 0.0), 1), 1, 0);
  check_scrape(h, ih, 1, 0, 0);
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::none, 500.0), 1), 0, 1);
  // No left at all keeps the previous state.
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::none), 1), 0, 1);
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::update, 0.0), 1), 1, 0);
  check_counts(response_of(h.announce(1, ih, peer(1), wt::announce_event::none), 1), 1, 0);
  auto totals = h.t.totals();
  CHECK(totals.seeders == 1);
  CHECK(totals.leechers == 0);
}

// The per-connection peer cap is counted by the connection's WebTorrent session (across all
// shards; tests/unit/test_webtorrent_session.cpp). The tracker tells it of pairs it loses
// while it stays open.
TEST_CASE("a pair moved to another connection, refused or expired is reported released") {
  sw::tracker_config config;
  config.peer_ttl_ms = 10'000;
  config.interval_s = 2;  // an owner silent for 2 s may be taken over
  config.reannounce_grace_ms = 0;
  harness h(config);
  std::vector<sw::released_peer> released;
  h.announce(1, info_hash(1), peer(1));
  h.announce(1, info_hash(2), peer(1));
  h.announce(2, info_hash(1), peer(2));
  h.t.take_released(released);
  CHECK(released.empty());  // nothing changed hands

  // The release carries the ticket of the old owner's latest announce of the pair.
  std::vector<sw::outgoing> out;
  wt::announce again;
  again.info_hash = info_hash(1);
  again.peer_id = peer(1);
  h.t.on_announce(1, addr(1), std::move(again), h.now, out, 41);
  // Connection 3 announcing the pair while 1 is alive never held it: a release with its ticket.
  wt::announce early;
  early.info_hash = info_hash(1);
  early.peer_id = peer(1);
  h.t.on_announce(3, addr(3), std::move(early), h.now, out, 7);
  h.t.take_released(released);
  REQUIRE(released.size() == 1);
  CHECK(released[0].conn == 3);
  CHECK(released[0].ticket == 7);
  released.clear();

  h.now += 2'000;
  h.announce(3, info_hash(1), peer(1), wt::announce_event::none);  // peer 1 silent, reconnected on 3
  h.t.take_released(released);
  REQUIRE(released.size() == 1);
  CHECK(released[0].conn == 1);
  CHECK(released[0].info_hash == info_hash(1));
  CHECK(released[0].peer_id == peer(1));
  CHECK(released[0].ticket == 41);
  released.clear();
  h.t.take_released(released);
  CHECK(released.empty());  // taken once

  // Stopping a pair (the session knows: it sent the stop) and closing report nothing.
  h.announce(2, info_hash(1), peer(2), wt::announce_event::stopped);
  h.close(3);
  h.t.take_released(released);
  CHECK(released.empty());

  h.now += 10'000;
  h.expire();  // connection 1's pair (2, 1) expires while it is open
  h.t.take_released(released);
  REQUIRE(released.size() == 1);
  CHECK(released[0].conn == 1);
  CHECK(released[0].info_hash == info_hash(2));
  CHECK(h.t.totals().swarms == 0);
}

TEST_CASE("scrape gives zeros for unknown info_hashes and the counts of known ones") {
  harness h;
  h.announce(1, info_hash(1), peer(1), wt::announce_event::started, 0.0);
  h.announce(2, info_hash(1), peer(2));
  h.announce(3, info_hash(1), peer(3), wt::announce_event::completed);

  std::vector<wt::scrape_file> files;
  h.t.scrape({info_hash(7), info_hash(1), info_hash(8)}, files);
  REQUIRE(files.size() == 3);
  CHECK(files[0].info_hash == info_hash(7));
  CHECK(files[0].complete == 0);
  CHECK(files[0].incomplete == 0);
  CHECK(files[0].downloaded == 0);
  CHECK(files[1].info_hash == info_hash(1));
  CHECK(files[1].complete == 2);
  CHECK(files[1].incomplete == 1);
  CHECK(files[1].downloaded == 1);
  CHECK(files[2].info_hash == info_hash(8));
  CHECK(files[2].complete + files[2].incomplete + files[2].downloaded == 0);
  CHECK(h.t.totals().swarms == 1);  // scraping creates nothing
}

TEST_CASE("scrape_all lists every swarm, at most max_scrape_all") {
  sw::tracker_config config;
  config.max_scrape_all = 5;
  harness h(config);
  std::map<binary_id, std::uint32_t> sizes;
  for (int s = 1; s <= 3; ++s)
    for (int p = 0; p < s; ++p) {
      h.announce(static_cast<connection_id>(p + 1), info_hash(s), peer(p));
      ++sizes[info_hash(s)];
    }
  std::vector<wt::scrape_file> files;
  h.t.scrape_all(files);
  REQUIRE(files.size() == 3);
  for (const auto& f : files) {
    REQUIRE(sizes.count(f.info_hash) == 1);
    CHECK(f.incomplete == sizes[f.info_hash]);
    CHECK(f.complete == 0);
  }

  for (int s = 4; s <= 12; ++s) h.announce(1, info_hash(s), peer(0));
  files.clear();
  h.t.scrape_all(files);
  CHECK(files.size() == 5);
  std::set<binary_id> distinct;
  for (const auto& f : files) distinct.insert(f.info_hash);
  CHECK(distinct.size() == 5);

  config.max_scrape_all = 0;
  harness none(config);
  none.announce(1, info_hash(1), peer(1));
  files.clear();
  none.t.scrape_all(files);
  CHECK(files.empty());
}

TEST_CASE("top_swarms lists the largest swarms first") {
  harness h;
  const std::vector<std::pair<int, int>> swarms = {{1, 5}, {2, 3}, {3, 8}, {4, 1}};  // (info_hash, peers)
  for (auto [ih, n] : swarms)
    for (int p = 0; p < n; ++p)
      h.announce(static_cast<connection_id>(p + 1), info_hash(ih), peer(p), wt::announce_event::started,
                 p == 0 ? std::optional<double>(0.0) : std::nullopt);

  auto top = h.t.top_swarms(2);
  REQUIRE(top.size() == 2);
  CHECK(top[0].info_hash == info_hash(3));
  CHECK(top[0].seeders == 1);
  CHECK(top[0].leechers == 7);
  CHECK(top[1].info_hash == info_hash(1));
  CHECK(top[1].seeders == 1);
  CHECK(top[1].leechers == 4);

  auto all = h.t.top_swarms(100);
  REQUIRE(all.size() == 4);
  std::vector<binary_id> order;
  for (const auto& s : all) order.push_back(s.info_hash);
  CHECK(order == std::vector<binary_id>{info_hash(3), info_hash(1), info_hash(2), info_hash(4)});
  CHECK(h.t.top_swarms(0).empty());
}

TEST_CASE("unrelayable offers are counted as unrelayed") {
  harness h;
  const auto ih = info_hash(1);
  h.announce(2, ih, peer(2));
  wt::announce a;
  a.info_hash = ih;
  a.peer_id = peer(1);
  a.offers.push_back({offer_id(1), sdp_for(1)});
  a.offers_skipped = 4;  // e.g. {"fake_offer": …} entries the codec dropped
  std::vector<sw::outgoing> out;
  h.t.on_announce(1, addr(1), std::move(a), h.now, out);
  CHECK(of_type<wt::offer_relay>(out).size() == 1);
  CHECK(h.t.counters().offers_unrelayed == 4);
  CHECK(h.t.counters().offers_relayed == 1);
  CHECK(h.t.check_invariants() == "");
}
