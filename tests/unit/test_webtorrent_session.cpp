// The WebTorrent protocol session (sessions/webtorrent_session): routing, protocol errors and
// their streak, the per-connection pair cap, and what comes home, against a fake transport
// and a fake router.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fake_session_peers.hpp"
#include "server/sessions/webtorrent_session.hpp"
#include "server/swarm/tracker.hpp"
#include "test_ids.hpp"

namespace {

namespace wt = swarmcoord::protocol::webtorrent;
namespace ws = swarmcoord::protocol::websocket;
using nlohmann::json;
using namespace swarmcoord::test;  // the fakes, ss (sessions), index_in
using swarmcoord::protocol::binary_id;
using swarmcoord::swarm::ip_address;

binary_id info_hash(int n) { return make_id('I', n); }
binary_id peer(int n) { return make_id('P', n); }
std::string id_text(const binary_id& id) { return std::string(id.bytes.begin(), id.bytes.end()); }

constexpr std::size_t invalid_index = index_in<wt::client_message, wt::request_error>();
constexpr std::size_t announce_index = index_in<wt::client_message, wt::announce>();
constexpr std::size_t error_type = index_in<wt::server_message, wt::request_error>();
constexpr std::size_t scrape_type = index_in<wt::server_message, wt::scrape_response>();
constexpr auto reason_index(wt::error_reason r) { return static_cast<std::size_t>(r); }

struct harness {
  static constexpr swarmcoord::swarm::connection_id id = 4242;
  const ip_address client = ip_address::v4(192, 0, 2, 7);
  fake_transport transport;
  fake_router router;
  swarmcoord::metrics::webtorrent_session_counters counters;
  ss::webtorrent_session session;

  explicit harness(ss::webtorrent_session::limits l = {3, 2, 3})
      : session(transport, router, counters, id, client, l) {}

  void announce(int ih, int pid, wt::announce_event event = wt::announce_event::started) {
    wt::announce a;
    a.info_hash = info_hash(ih);
    a.peer_id = peer(pid);
    a.event = event;
    a.left = 0;
    session.on_message(wt::encode_announce(a));
  }
  std::size_t announces_routed() const { return router.requests<ss::announce_request>().size(); }
  // The ticket of the latest announce of a pair routed, as its owner would echo it.
  std::uint32_t ticket_of(int ih, int pid) const {
    std::uint32_t ticket = 0;
    for (const auto& r : router.requests<ss::announce_request>())
      if (r.announce.info_hash == info_hash(ih) && r.announce.peer_id == peer(pid)) ticket = r.ticket;
    return ticket;
  }
  void invalid() { session.on_message("this is not json"); }
};

TEST_CASE("webtorrent session: announce, answer and scrape are routed", "[session]") {
  harness h;
  h.router.owner = 5;
  h.announce(1, 1);
  auto announces = h.router.requests<ss::announce_request>();
  REQUIRE(announces.size() == 1);
  CHECK(announces[0].from == harness::id);
  CHECK(announces[0].address == h.client);
  CHECK(announces[0].announce.info_hash == info_hash(1));
  CHECK(announces[0].announce.peer_id == peer(1));
  CHECK(announces[0].announce.event == wt::announce_event::started);
  CHECK(h.router.to_owner_calls[0].route_seen.last_owner == ss::route_state::no_owner);
  CHECK(h.counters.received[announce_index] == 1);

  wt::answer a;
  a.info_hash = info_hash(1);
  a.peer_id = peer(1);
  a.to_peer_id = peer(2);
  a.offer_id = make_id('O', 3);
  a.sdp = {R"({"type":"answer","sdp":"v=0"})"};
  h.session.on_message(wt::encode_answer(a));
  auto answers = h.router.requests<ss::answer_request>();
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].from == harness::id);
  CHECK(answers[0].answer.to_peer_id == peer(2));
  CHECK(answers[0].answer.offer_id == make_id('O', 3));
  CHECK(answers[0].answer.sdp.text == a.sdp.text);
  // The router saw where the announce went.
  CHECK(h.router.to_owner_calls[1].route_seen.last_owner == 5);

  h.session.on_message(wt::encode_scrape({{info_hash(1), info_hash(2)}, false}));
  REQUIRE(h.router.scrapes.size() == 1);
  CHECK(h.router.scrapes[0].from == harness::id);
  CHECK(h.router.scrapes[0].scrape.info_hashes == std::vector<binary_id>{info_hash(1), info_hash(2)});
  CHECK_FALSE(h.router.scrapes[0].scrape.all);
  CHECK(h.router.to_owner_calls.size() == 2);  // a scrape is not an owner request
  CHECK(h.transport.sent.empty());
  CHECK(h.router.home_calls.empty());
}

TEST_CASE("webtorrent session: a decode error is answered in order and counted", "[session]") {
  harness h;
  h.router.owner = 2;
  h.announce(1, 1);
  h.invalid();
  REQUIRE(h.router.home_calls.size() == 1);
  const auto& call = h.router.home_calls[0];
  CHECK(call.to == harness::id);
  CHECK(call.route_seen.last_owner == 2);  // behind the announce's results
  const auto* out = std::get_if<ss::outbound>(&call.message);
  REQUIRE(out);
  CHECK(out->type == error_type);
  const auto reply = json::parse(*out->payload);
  CHECK(reply.contains("failure reason"));
  CHECK_FALSE(reply.contains("info_hash"));  // nothing known: the shape that drops the socket
  CHECK(h.counters.errors[reason_index(wt::error_reason::bad_json)] == 1);
  CHECK(h.counters.received[invalid_index] == 1);
  CHECK(h.transport.sent.empty());  // not sent directly: it would overtake the announce's results
  CHECK(h.router.home_closes().empty());

  // Delivered home, it goes to the transport and is counted as sent.
  h.router.deliver_home(h.session);
  REQUIRE(h.transport.sent.size() == 1);
  CHECK(json::parse(h.transport.sent[0]).contains("failure reason"));
  CHECK(h.counters.sent[error_type] == 1);
}

TEST_CASE("webtorrent session: too many invalid messages in a row close the connection", "[session]") {
  harness h;  // max_protocol_errors = 3
  h.invalid();
  h.invalid();
  CHECK(h.router.home_closes().empty());
  h.invalid();
  auto closes = h.router.home_closes();
  REQUIRE(closes.size() == 1);
  CHECK(closes[0].code == ws::close_code::policy_error);
  CHECK(closes[0].reason == "too many invalid messages");
  // The close comes after the third error reply.
  REQUIRE(h.router.home_calls.size() == 4);
  CHECK(std::holds_alternative<ss::close_request>(h.router.home_calls[3].message));
  CHECK(h.counters.received[invalid_index] == 3);

  // Closing: nothing more is taken in.
  h.announce(1, 1);
  h.invalid();
  CHECK(h.router.to_owner_calls.empty());
  CHECK(h.router.home_calls.size() == 4);
  CHECK(h.counters.received[invalid_index] == 3);
  CHECK(h.counters.received[announce_index] == 0);

  h.router.deliver_home(h.session);
  CHECK(h.transport.sent.size() == 3);
  CHECK(h.transport.close_calls == 1);
  CHECK(h.transport.close_code == ws::close_code::policy_error);
  CHECK(h.transport.close_reason == "too many invalid messages");
}

TEST_CASE("webtorrent session: a valid message resets the error streak", "[session]") {
  harness h;
  h.invalid();
  h.invalid();
  h.announce(1, 1);
  h.invalid();
  h.invalid();
  CHECK(h.router.home_closes().empty());
  h.session.on_message(wt::encode_scrape({{}, true}));
  h.invalid();
  h.invalid();
  CHECK(h.router.home_closes().empty());
  h.invalid();
  CHECK(h.router.home_closes().size() == 1);
  CHECK(h.counters.errors[reason_index(wt::error_reason::bad_json)] == 7);
}

TEST_CASE("webtorrent session: the pair cap covers every info_hash of the connection", "[session]") {
  harness h;  // max_peers = 2
  // Two swarms, which may well live on two shards: the cap is the connection's.
  h.announce(1, 1);
  h.announce(2, 1);
  CHECK(h.session.pairs_held() == 2);
  CHECK(h.announces_routed() == 2);

  SECTION("a new pair beyond the cap is refused without closing") {
    for (int i = 0; i < 5; ++i) h.announce(3 + i, 1);  // more than max_protocol_errors
    CHECK(h.announces_routed() == 2);
    CHECK(h.session.pairs_held() == 2);
    CHECK(h.counters.errors[reason_index(wt::error_reason::too_many_peers)] == 5);
    CHECK(h.counters.received[announce_index] == 7);
    CHECK(h.counters.received[invalid_index] == 0);
    CHECK(h.router.home_closes().empty());
    const auto texts = h.router.home_texts();
    REQUIRE(texts.size() == 5);
    const auto reply = json::parse(texts[0]);
    CHECK(reply.value("action", "") == "announce");
    CHECK(reply.value("info_hash", "") == id_text(info_hash(3)));  // the warning shape: the client keeps its socket
    CHECK(reply.contains("failure reason"));
    // A refused announce is a valid message: it breaks a streak.
    h.invalid();
    h.invalid();
    h.announce(9, 1);
    h.invalid();
    CHECK(h.router.home_closes().empty());
  }
  SECTION("a pair already held is always accepted, without a second slot") {
    h.announce(1, 1, wt::announce_event::none);
    h.announce(2, 1, wt::announce_event::completed);
    h.announce(1, 1, wt::announce_event::update);
    CHECK(h.announces_routed() == 5);
    CHECK(h.session.pairs_held() == 2);
    CHECK(h.router.home_calls.empty());
  }
  SECTION("the same peer_id in another swarm is another pair") {
    h.announce(3, 1);
    CHECK(h.announces_routed() == 2);
    CHECK(h.router.home_texts().size() == 1);
  }
  SECTION("stopped frees its slot") {
    h.announce(1, 1, wt::announce_event::stopped);
    CHECK(h.announces_routed() == 3);  // the owner drops it
    CHECK(h.session.pairs_held() == 1);
    h.announce(3, 1);
    CHECK(h.announces_routed() == 4);
    CHECK(h.session.pairs_held() == 2);
    // A stopped pair that was never held is still routed and frees nothing.
    h.announce(7, 7, wt::announce_event::stopped);
    CHECK(h.announces_routed() == 5);
    CHECK(h.session.pairs_held() == 2);
    h.announce(4, 1);
    CHECK(h.announces_routed() == 5);
    CHECK(h.counters.errors[reason_index(wt::error_reason::too_many_peers)] == 1);
  }
  SECTION("a pair released by its owner frees its slot") {
    h.session.on_home_message(ss::pair_released{info_hash(2), peer(1), h.ticket_of(2, 1)});
    CHECK(h.session.pairs_held() == 1);
    // One it never held changes nothing.
    h.session.on_home_message(ss::pair_released{info_hash(8), peer(8), h.ticket_of(2, 1)});
    CHECK(h.session.pairs_held() == 1);
    h.announce(3, 1);
    CHECK(h.announces_routed() == 3);
    CHECK(h.session.pairs_held() == 2);
    h.announce(4, 1);
    CHECK(h.announces_routed() == 3);
    CHECK(h.transport.sent.empty());  // released pairs are bookkeeping, not messages
  }
  SECTION("a release that crossed a newer announce of the pair is stale") {
    // Another connection took pair (2, 1) over and its owner sent the release home; meanwhile
    // this connection announced the pair again, taking it back. The late release must not
    // free the slot, or two connections playing this game would hold pairs without limit.
    const auto released = h.ticket_of(2, 1);
    h.announce(2, 1, wt::announce_event::none);
    CHECK(h.ticket_of(2, 1) != released);
    h.session.on_home_message(ss::pair_released{info_hash(2), peer(1), released});
    CHECK(h.session.pairs_held() == 2);
    h.announce(3, 1);
    CHECK(h.counters.errors[reason_index(wt::error_reason::too_many_peers)] == 1);
    // A release of the latest announce does free it.
    h.session.on_home_message(ss::pair_released{info_hash(2), peer(1), h.ticket_of(2, 1)});
    CHECK(h.session.pairs_held() == 1);
  }
}

// The owner of the swarms, played by a real tracker: runs the announces the session routed
// since the last call and brings the results for the session's connection home, as a worker
// does (outbound messages, then releases).
struct tracker_owner {
  swarmcoord::swarm::tracker t{swarmcoord::swarm::tracker_config{}};
  std::size_t done = 0;
  swarmcoord::swarm::time_ms now = 1'000'000;

  void announce_from(swarmcoord::swarm::connection_id conn, int ih, int pid) {
    wt::announce a;
    a.info_hash = info_hash(ih);
    a.peer_id = peer(pid);
    std::vector<swarmcoord::swarm::outgoing> out;
    t.on_announce(conn, ip_address::v4(203, 0, 113, 9), std::move(a), now, out);
  }
  void run(harness& h) {
    std::vector<swarmcoord::swarm::outgoing> out;
    for (; done < h.router.to_owner_calls.size(); ++done) {
      auto* r = std::get_if<ss::announce_request>(&h.router.to_owner_calls[done].request);
      REQUIRE(r);
      t.on_announce(r->from, r->address, std::move(r->announce), now, out, r->ticket);
    }
    for (auto& o : out) {
      REQUIRE(o.to == harness::id);
      const auto type = static_cast<std::uint8_t>(o.message.index());
      h.session.on_home_message(ss::outbound{std::make_shared<const std::string>(wt::encode(o.message)), type});
    }
    std::vector<swarmcoord::swarm::released_peer> released;
    t.take_released(released);
    for (const auto& r : released) {
      REQUIRE(r.conn == harness::id);
      h.session.on_home_message(ss::pair_released{r.info_hash, r.peer_id, r.ticket});
    }
  }
};

TEST_CASE("webtorrent session: an announce of a peer_id another connection holds gets a failure, no slot",
          "[session]") {
  harness h;  // max_protocol_errors = 3, max_peers = 2
  tracker_owner owner;
  owner.announce_from(77, 1, 1);  // connection 77 holds peer 1 in swarm 1
  h.announce(1, 1);
  owner.run(h);

  REQUIRE(h.transport.sent.size() == 1);
  const auto reply = json::parse(h.transport.sent[0]);
  // The warning shape: the client keeps its socket and announces again later.
  CHECK(reply.value("action", "") == "announce");
  CHECK(reply.value("info_hash", "") == id_text(info_hash(1)));
  CHECK(reply.value("failure reason", "") == "peer_id is in use by another connection");
  CHECK(h.counters.sent[error_type] == 1);
  // Counted once, by the tracker that refused it.
  CHECK(owner.t.counters().errors[reason_index(wt::error_reason::peer_id_in_use)] == 1);
  CHECK(h.counters.errors[reason_index(wt::error_reason::peer_id_in_use)] == 0);
  // The pair never was this connection's: its slot came back.
  CHECK(h.session.pairs_held() == 0);

  // Refusals are replies to valid messages: many in a row neither close the connection nor
  // use up the pair cap.
  for (int i = 0; i < 5; ++i) h.announce(1, 1, wt::announce_event::none);
  owner.run(h);
  CHECK(h.transport.sent.size() == 6);
  CHECK(h.transport.close_calls == 0);
  CHECK(h.router.home_closes().empty());
  CHECK(h.session.pairs_held() == 0);
  h.announce(2, 2);
  h.announce(3, 2);
  owner.run(h);
  CHECK(h.session.pairs_held() == 2);
  CHECK(h.counters.errors[reason_index(wt::error_reason::too_many_peers)] == 0);

  // Once connection 77 is gone, this one takes the peer_id (a client that reconnected).
  owner.t.on_connection_closed(77);
  h.announce(3, 2, wt::announce_event::stopped);  // room for it
  h.announce(1, 1, wt::announce_event::none);
  owner.run(h);
  CHECK(h.session.pairs_held() == 2);
  const auto last = json::parse(h.transport.sent.back());
  CHECK_FALSE(last.contains("failure reason"));
  CHECK(last.value("info_hash", "") == id_text(info_hash(1)));
  CHECK(last.value("complete", 0) == 1);  // this connection's peer alone
}

TEST_CASE("webtorrent session: home messages go to the transport and are counted when taken", "[session]") {
  harness h;
  const std::uint8_t offer_type = index_in<wt::server_message, wt::offer_relay>();
  h.session.on_home_message(ss::outbound{std::make_shared<const std::string>("first"), offer_type});
  REQUIRE(h.transport.sent == std::vector<std::string>{"first"});
  CHECK(h.counters.sent[offer_type] == 1);

  h.transport.refuse = true;
  h.session.on_home_message(ss::outbound{std::make_shared<const std::string>("second"), offer_type});
  CHECK(h.transport.sent.size() == 1);
  CHECK(h.counters.sent[offer_type] == 1);

  h.transport.refuse = false;
  h.session.on_home_message(ss::close_request{ws::close_code::going_away, "bye"});
  CHECK(h.transport.close_calls == 1);
  CHECK(h.transport.close_code == ws::close_code::going_away);
  CHECK(h.transport.close_reason == "bye");
  // Native-only results are ignored.
  h.session.on_home_message(ss::join_refused{"https://example.com/x"});
  CHECK(h.transport.sent.size() == 1);
}

TEST_CASE("webtorrent session: with max_scrape_all 0, a scrape of all is answered empty, asking no owner", "[session]") {
  harness h({3, 2, 0});
  h.session.on_message(wt::encode_scrape({{}, true}));
  CHECK(h.router.scrapes.empty());
  REQUIRE(h.transport.sent.size() == 1);
  const auto reply = json::parse(h.transport.sent[0]);
  CHECK(reply.value("action", "") == "scrape");
  CHECK(reply["files"].empty());
  CHECK(h.counters.sent[scrape_type] == 1);
  // Named info_hashes still go to their owners.
  h.session.on_message(wt::encode_scrape({{info_hash(1)}, false}));
  REQUIRE(h.router.scrapes.size() == 1);
  CHECK(h.router.scrapes[0].scrape.info_hashes.size() == 1);
}

TEST_CASE("webtorrent session: a scrape result is encoded, a scrape of all capped", "[session]") {
  harness h;  // max_scrape_all = 3
  std::vector<wt::scrape_file> files;
  for (int i = 1; i <= 5; ++i) files.push_back({info_hash(i), static_cast<std::uint32_t>(i), 1, 0});

  SECTION("all") {
    h.session.on_home_message(ss::scrape_result{files, true});
    REQUIRE(h.transport.sent.size() == 1);
    const auto reply = json::parse(h.transport.sent[0]);
    REQUIRE(reply.contains("files"));
    CHECK(reply["files"].size() == 3);
    CHECK(reply["files"].contains(id_text(info_hash(1))));
    CHECK_FALSE(reply["files"].contains(id_text(info_hash(4))));
    CHECK(h.counters.sent[scrape_type] == 1);
  }
  SECTION("named info_hashes are never capped") {
    h.session.on_home_message(ss::scrape_result{files, false});
    REQUIRE(h.transport.sent.size() == 1);
    const auto reply = json::parse(h.transport.sent[0]);
    CHECK(reply["files"].size() == 5);
    CHECK(reply["files"][id_text(info_hash(5))].value("complete", 0) == 5);
  }
  SECTION("not counted when the transport refuses it") {
    h.transport.refuse = true;
    h.session.on_home_message(ss::scrape_result{files, true});
    CHECK(h.counters.sent[scrape_type] == 0);
  }
}

TEST_CASE("webtorrent session: closing tells the router, with every owner used", "[session]") {
  harness h;
  h.router.owner = 1;
  h.announce(1, 1);
  h.router.owner = 3;
  h.announce(2, 1);
  h.session.on_closed();
  REQUIRE(h.router.closed.size() == 1);
  CHECK(h.router.closed[0].gone.conn == harness::id);
  CHECK_FALSE(h.router.closed[0].gone.native_peer);
  CHECK(h.router.closed[0].route_seen.owners_used == ((1u << 1) | (1u << 3)));
}

}  // namespace

TEST_CASE("webtorrent session: swarms per address are shared by every connection of the address", "[session]") {
  ss::address_limits per_address({.swarms = 3});
  swarmcoord::metrics::limit_counters limited;
  fake_transport t1, t2;
  fake_router r1, r2;
  swarmcoord::metrics::webtorrent_session_counters counters;
  const auto client = ip_address::v4(192, 0, 2, 7);
  ss::webtorrent_session a(t1, r1, counters, 1, client, {3, 100, 0}, {{}, &per_address, &limited});
  ss::webtorrent_session b(t2, r2, counters, 2, client, {3, 100, 0}, {{}, &per_address, &limited});
  auto announce = [](ss::webtorrent_session& s, int ih, wt::announce_event event = wt::announce_event::started) {
    wt::announce m;
    m.info_hash = info_hash(ih);
    m.peer_id = peer(1);
    m.event = event;
    s.on_message(wt::encode_announce(m));
  };
  announce(a, 1);
  announce(a, 2);
  announce(b, 3);
  announce(b, 4);  // the address's fourth: refused, not routed
  CHECK(r2.requests<ss::announce_request>().size() == 1);
  CHECK(limited.refused[static_cast<std::size_t>(swarmcoord::metrics::limit::swarms_per_address)] == 1);
  REQUIRE(r2.home_texts().size() == 1);
  CHECK(json::parse(r2.home_texts()[0])["failure reason"] == "too many swarms announced into from one address");
  // Re-announcing a pair held takes nothing more; stopping one gives its slot back.
  announce(a, 1);
  CHECK(r1.requests<ss::announce_request>().size() == 3);
  announce(a, 2, wt::announce_event::stopped);
  announce(b, 4);
  CHECK(r2.requests<ss::announce_request>().size() == 2);
  CHECK(per_address.of(client).swarms == 3);
  // A closed connection gives back all it held.
  b.on_closed();
  CHECK(per_address.of(client).swarms == 1);
  a.on_closed();
  CHECK(per_address.of(client).swarms == 0);
}

TEST_CASE("webtorrent session: a token that lists info_hashes allows announces into those only", "[session]") {
  fake_transport t;
  fake_router r;
  swarmcoord::metrics::webtorrent_session_counters counters;
  ss::grant g;
  g.restricted = true;
  g.info_hashes = {info_hash(1)};
  ss::webtorrent_session s(t, r, counters, 1, ip_address::v4(192, 0, 2, 7), {3, 100, 0}, {g});
  for (int ih : {1, 2}) {
    wt::announce m;
    m.info_hash = info_hash(ih);
    m.peer_id = peer(1);
    s.on_message(wt::encode_announce(m));
  }
  REQUIRE(r.requests<ss::announce_request>().size() == 1);
  CHECK(r.requests<ss::announce_request>()[0].announce.info_hash == info_hash(1));
  REQUIRE(r.home_texts().size() == 1);
  CHECK(json::parse(r.home_texts()[0])["failure reason"] == "info_hash not allowed by the connection's token");
  CHECK(counters.errors[reason_index(wt::error_reason::not_allowed)] == 1);
  CHECK(s.pairs_held() == 1);
}
