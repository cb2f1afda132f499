// The native protocol session (sessions/native_session): hello first, routing of swarm
// messages with the member's info, the per-connection swarm cap and its refunds, protocol
// errors and their streak, against a fake transport and a fake router.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fake_session_peers.hpp"
#include "server/config/config.hpp"
#include "server/sessions/native_session.hpp"
#include "server/swarm/mesh.hpp"

namespace {

namespace nv = swarmcoord::protocol::native;
namespace ws = swarmcoord::protocol::websocket;
namespace cfg = swarmcoord::config;
using nlohmann::json;
using namespace swarmcoord::test;  // the fakes, ss (sessions), index_in
using swarmcoord::swarm::ip_address;
using swarmcoord::swarm::location;

constexpr nv::peer_id first_peer_id = 0x3f2a9c0d00000007;
constexpr std::size_t welcome_type = index_in<nv::server_message, nv::welcome>();
constexpr std::size_t error_type = index_in<nv::server_message, nv::error>();
constexpr std::size_t invalid_index = index_in<nv::client_message, nv::error>();
constexpr auto code_index(nv::error_code c) { return static_cast<std::size_t>(c); }

std::string swarm_url(int n) { return "https://cdn.example.com/seg-" + std::to_string(n) + ".ts"; }

std::string hello(std::optional<std::uint32_t> max_neighbors = std::nullopt) {
  return nv::encode_hello({false, max_neighbors});
}
std::string join(int n) {
  nv::join j;
  j.swarm = swarm_url(n);
  j.size = 1 << 20;
  j.block_size = 65536;
  return nv::encode_join(j);
}
std::string leave(int n) { return nv::encode_leave({swarm_url(n)}); }

struct harness {
  static constexpr swarmcoord::swarm::connection_id id = 9001;
  const ip_address client = ip_address::v4(198, 51, 100, 23);
  const location where{7, 0xC63364, 64500, 0x4445};
  cfg::config config = cfg::load({});
  fake_transport transport;
  fake_router router;
  swarmcoord::metrics::native_session_counters counters;
  unsigned ids_drawn = 0;
  ss::native_session session{transport, router, counters, config, id, client, where, [this] {
                               ++ids_drawn;
                               return first_peer_id + ids_drawn - 1;
                             }};

  harness() {
    config.server.max_protocol_errors = 3;
    config.limits.max_swarms_per_connection = 2;
  }
  void send(const std::string& text) { session.on_message(text); }
  // The codes of the error replies waiting for home, in order.
  std::vector<std::string> home_errors() const {
    std::vector<std::string> codes;
    for (const auto& text : router.home_texts()) {
      const auto j = json::parse(text);
      CHECK(j.value("type", "") == "error");
      codes.push_back(j.value("code", ""));
    }
    return codes;
  }
  std::vector<std::string> joined_swarms() const {
    std::vector<std::string> keys;
    for (const auto& j : router.native<nv::join>()) keys.push_back(j.swarm);
    return keys;
  }
};

TEST_CASE("native session: nothing is taken before hello", "[session]") {
  harness h;
  SECTION("a valid message") {
    h.send(join(1));
    CHECK(h.home_errors() == std::vector<std::string>{"hello_required"});
    CHECK(json::parse(h.router.home_texts()[0]).value("ref", "") == "join");
    CHECK(h.counters.errors[code_index(nv::error_code::hello_required)] == 1);
  }
  SECTION("an invalid one") {
    h.send("{nope");
    CHECK(h.home_errors() == std::vector<std::string>{"bad_json"});
    CHECK(h.counters.received[invalid_index] == 1);
  }
  auto closes = h.router.home_closes();
  REQUIRE(closes.size() == 1);
  CHECK(closes[0].code == ws::close_code::policy_error);
  CHECK(closes[0].reason == "hello required");
  CHECK(std::holds_alternative<ss::close_request>(h.router.home_calls.back().message));
  CHECK(h.router.to_owner_calls.empty());

  // The connection is closing: not even hello is taken any more.
  h.send(hello());
  h.send(join(2));
  CHECK(h.ids_drawn == 0);
  CHECK(h.transport.sent.empty());
  CHECK(h.router.to_owner_calls.empty());
  CHECK(h.router.home_calls.size() == 2);

  h.session.on_closed();
  REQUIRE(h.router.closed.size() == 1);
  CHECK(h.router.closed[0].gone.conn == harness::id);
  CHECK_FALSE(h.router.closed[0].gone.native_peer);
}

TEST_CASE("native session: hello is answered with welcome, directly", "[session]") {
  harness h;  // mesh.max_neighbors = 8 by default
  REQUIRE(h.config.mesh.max_neighbors == 8);
  std::uint32_t expected = 8;
  SECTION("fewer asked") {
    h.send(hello(3));
    expected = 3;
  }
  SECTION("more asked") { h.send(hello(20)); }
  SECTION("none asked") { h.send(hello()); }
  CHECK(h.router.home_calls.empty());
  REQUIRE(h.transport.sent.size() == 1);
  const auto welcome = json::parse(h.transport.sent[0]);
  CHECK(welcome.value("type", "") == "welcome");
  CHECK(welcome.value("peer_id", "") == nv::format_peer_id(first_peer_id));
  CHECK(welcome.value("max_neighbors", 0u) == expected);
  CHECK(welcome.value("heartbeat_s", 0u) == h.config.server.idle_timeout_s / 2);
  CHECK(welcome["ice_servers"].is_array());
  CHECK(h.counters.sent[welcome_type] == 1);

  // Joins carry who the member is.
  h.send(join(1));
  auto requests = h.router.requests<ss::native_request>();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].who.conn == harness::id);
  CHECK(requests[0].who.id == first_peer_id);
  CHECK(requests[0].who.max_neighbors == expected);
  CHECK(requests[0].who.where.site == h.where.site);
  CHECK(requests[0].who.where.subnet == h.where.subnet);
  CHECK(requests[0].who.where.asn == h.where.asn);
  CHECK(requests[0].who.where.country == h.where.country);
  REQUIRE(std::holds_alternative<nv::join>(requests[0].message));
  CHECK(std::get<nv::join>(requests[0].message).swarm == swarm_url(1));
}

TEST_CASE("native session: a second hello is an error", "[session]") {
  harness h;
  h.send(hello());
  h.send(hello(2));
  CHECK(h.ids_drawn == 1);
  CHECK(h.transport.sent.size() == 1);
  CHECK(h.home_errors() == std::vector<std::string>{"already_hello"});
  CHECK(h.counters.errors[code_index(nv::error_code::already_hello)] == 1);
  CHECK(h.router.home_closes().empty());
  // The first hello's figures hold.
  h.send(join(1));
  REQUIRE(h.router.requests<ss::native_request>().size() == 1);
  CHECK(h.router.requests<ss::native_request>()[0].who.max_neighbors == 8);
}

TEST_CASE("native session: have, leave, signal and report are routed", "[session]") {
  harness h;
  h.send(hello());
  h.send(join(1));
  h.send(nv::encode_have({swarm_url(1), {1, 2, 3}}));
  nv::signal s;
  s.swarm = swarm_url(1);
  s.to = 0x1234;
  s.data.text = R"({"type":"offer","sdp":"v=0"})";
  h.send(nv::encode_signal(s));
  nv::report r;
  r.swarm = swarm_url(1);
  r.http_bytes = 10;
  r.p2p_bytes = 20;
  r.bad_peers = {0x99};
  h.send(nv::encode_report(r));
  h.send(leave(1));

  REQUIRE(h.router.to_owner_calls.size() == 5);
  for (const auto& req : h.router.requests<ss::native_request>()) CHECK(req.who.id == first_peer_id);
  REQUIRE(h.router.native<nv::have>().size() == 1);
  CHECK(h.router.native<nv::have>()[0].blocks == std::vector<std::uint32_t>{1, 2, 3});
  REQUIRE(h.router.native<nv::signal>().size() == 1);
  CHECK(h.router.native<nv::signal>()[0].to == 0x1234);
  CHECK(json::parse(h.router.native<nv::signal>()[0].data.text) == json::parse(s.data.text));
  REQUIRE(h.router.native<nv::report>().size() == 1);
  CHECK(h.router.native<nv::report>()[0].p2p_bytes == 20);
  CHECK(h.router.native<nv::report>()[0].bad_peers == std::vector<nv::peer_id>{0x99});
  REQUIRE(h.router.native<nv::leave>().size() == 1);
  CHECK(h.router.native<nv::leave>()[0].swarm == swarm_url(1));
  CHECK(h.router.home_calls.empty());
}

TEST_CASE("native session: a signal over signal.max_bytes is refused at the session", "[session]") {
  harness h;
  h.config.signal.max_bytes = 256;
  h.send(hello());
  h.send(join(1));
  nv::signal s;
  s.swarm = swarm_url(1);
  s.to = 0x1234;
  s.data.text = json{{"type", "offer"}, {"sdp", std::string(300, 'x')}}.dump();
  h.send(nv::encode_signal(s));
  CHECK(h.router.native<nv::signal>().empty());
  CHECK(h.home_errors() == std::vector<std::string>{"signal_too_big"});
  CHECK(h.counters.signals_too_big == 1);
  CHECK(h.counters.errors[code_index(nv::error_code::signal_too_big)] == 1);
  // Just under the limit goes through.
  s.data.text = json{{"type", "offer"}, {"sdp", std::string(200, 'x')}}.dump();
  h.send(nv::encode_signal(s));
  CHECK(h.router.native<nv::signal>().size() == 1);
  CHECK(h.counters.signals_too_big == 1);
}

TEST_CASE("native session: limits.max_swarms_per_connection", "[session]") {
  harness h;  // at most 2 swarms
  h.send(hello());
  h.send(join(1));
  h.send(join(2));
  CHECK(h.session.swarms_joined() == 2);

  SECTION("a third swarm is refused at the session") {
    h.send(join(3));
    CHECK(h.joined_swarms() == std::vector<std::string>{swarm_url(1), swarm_url(2)});
    CHECK(h.home_errors() == std::vector<std::string>{"too_many_swarms"});
    CHECK(json::parse(h.router.home_texts()[0]).value("swarm", "") == swarm_url(3));
    CHECK(h.counters.errors[code_index(nv::error_code::too_many_swarms)] == 1);
    // Joining one already held again is fine.
    h.send(join(1));
    CHECK(h.joined_swarms().size() == 3);
    CHECK(h.session.swarms_joined() == 2);
  }
  SECTION("leave frees the slot") {
    h.send(leave(1));
    CHECK(h.session.swarms_joined() == 1);
    h.send(join(3));
    CHECK(h.joined_swarms().back() == swarm_url(3));
    CHECK(h.session.swarms_joined() == 2);
    CHECK(h.router.home_calls.empty());
  }
  // What the owner echoes in a refusal: the ticket of the latest join of that swarm.
  auto ticket_of = [&](int n) {
    std::uint32_t ticket = 0;
    for (const auto& r : h.router.requests<ss::native_request>())
      if (auto* j = std::get_if<nv::join>(&r.message); j && j->swarm == swarm_url(n)) ticket = r.join_ticket;
    return ticket;
  };
  SECTION("a refused join gives its slot back") {
    h.session.on_home_message(ss::join_refused{swarm_url(2), ticket_of(2)});
    CHECK(h.session.swarms_joined() == 1);
    h.send(join(3));
    CHECK(h.joined_swarms().back() == swarm_url(3));
    CHECK(h.router.home_calls.empty());
  }
  SECTION("only when no other join of that swarm is in flight") {
    h.send(join(2));  // a second join of it, in flight
    h.session.on_home_message(ss::join_refused{swarm_url(2), ticket_of(2)});
    CHECK(h.session.swarms_joined() == 2);
    h.send(join(3));
    CHECK(h.home_errors() == std::vector<std::string>{"too_many_swarms"});
    h.session.on_home_message(ss::join_refused{swarm_url(2), ticket_of(2)});
    CHECK(h.session.swarms_joined() == 1);
    h.send(join(3));
    CHECK(h.joined_swarms().back() == swarm_url(3));
  }
  SECTION("a refusal for a swarm not held changes nothing") {
    h.session.on_home_message(ss::join_refused{swarm_url(9), ticket_of(2)});
    CHECK(h.session.swarms_joined() == 2);
  }
  SECTION("a refusal of a join made before a leave does not free a join made after it") {
    // join 2 (to be refused), leave 2, join 2 again (accepted): the late refusal of the first
    // join must leave the second one's slot taken, or a client could join without limit.
    const auto before_leave = ticket_of(2);
    h.send(leave(2));
    h.send(join(2));
    CHECK(ticket_of(2) != before_leave);
    h.session.on_home_message(ss::join_refused{swarm_url(2), before_leave});
    CHECK(h.session.swarms_joined() == 2);
    h.send(join(3));
    CHECK(h.home_errors() == std::vector<std::string>{"too_many_swarms"});
  }
  CHECK(h.transport.sent.size() == 1);  // the welcome only
}

TEST_CASE("native session: too many invalid messages in a row close the connection", "[session]") {
  harness h;  // max_protocol_errors = 3
  h.send(hello());
  h.send("[]");
  h.send("{}");
  h.send(join(1));  // a valid message resets the streak
  h.send("{nope");
  h.send(nv::encode_leave({"ftp://example.com/x"}));
  CHECK(h.router.home_closes().empty());
  h.send("null");
  auto closes = h.router.home_closes();
  REQUIRE(closes.size() == 1);
  CHECK(closes[0].code == ws::close_code::policy_error);
  CHECK(closes[0].reason == "too many invalid messages");
  CHECK(h.home_errors().size() == 5);
  CHECK(h.counters.received[invalid_index] == 5);

  h.send(join(2));
  h.send("{nope");
  CHECK(h.joined_swarms() == std::vector<std::string>{swarm_url(1)});
  CHECK(h.router.home_calls.size() == 6);

  h.router.deliver_home(h.session);
  CHECK(h.transport.sent.size() == 6);  // welcome and five errors
  CHECK(h.counters.sent[error_type] == 5);
  CHECK(h.transport.close_calls == 1);
  CHECK(h.transport.close_code == ws::close_code::policy_error);
}

// Sessions whose swarm requests a real mesh serves, as the owner worker would: its results go
// to the sessions of the connections they are for.
struct meshed_session {
  cfg::config config = cfg::load({});
  fake_transport transport;
  fake_router router;
  swarmcoord::metrics::native_session_counters counters;
  ss::native_session session;
  std::size_t routed = 0;  // owner requests already served

  meshed_session(swarmcoord::swarm::connection_id id, nv::peer_id peer)
      : session{transport, router, counters, config, id, ip_address::v4(198, 51, 100, static_cast<std::uint8_t>(id)),
                location{}, [peer] { return peer; }} {
    config.server.max_protocol_errors = 3;
  }
  void send(const std::string& text) { session.on_message(text); }
  std::vector<json> received(const std::string& type) const {
    std::vector<json> found;
    for (const auto& text : transport.sent)
      if (auto j = json::parse(text); j.value("type", "") == type) found.push_back(j);
    return found;
  }
};

struct mesh_owner {
  swarmcoord::swarm::mesh m{swarmcoord::swarm::mesh_config{}};
  std::map<swarmcoord::swarm::connection_id, meshed_session*> sessions;

  void add(swarmcoord::swarm::connection_id id, meshed_session& s) { sessions[id] = &s; }
  // Serves what every session routed since the last call, then delivers every result.
  void run() {
    std::vector<swarmcoord::swarm::mesh_outgoing> out;
    for (auto& [id, s] : sessions)
      for (; s->routed < s->router.to_owner_calls.size(); ++s->routed) {
        auto& r = std::get<ss::native_request>(s->router.to_owner_calls[s->routed].request);
        std::visit(ss::overloaded{
                       [&](nv::join& j) { m.on_join(r.who, std::move(j), 0, out); },
                       [&](nv::signal& sig) { m.on_signal(r.who, std::move(sig), 0, out); },
                       [&](auto&) { FAIL("not used here"); },
                   },
                   r.message);
      }
    for (auto& o : out) {
      const auto type = static_cast<std::uint8_t>(o.message.index());
      sessions.at(o.to)->session.on_home_message(ss::outbound{std::make_shared<const std::string>(nv::encode(o.message)), type});
    }
    for (auto& [id, s] : sessions) s->router.deliver_home(s->session);
  }
};

std::string signal_to(nv::peer_id to, const std::string& sdp) {
  nv::signal s;
  s.swarm = swarm_url(1);
  s.to = to;
  s.data.text = R"({"type":"offer","sdp":")" + sdp + R"("})";
  return nv::encode_signal(s);
}

TEST_CASE("native session: a signal to a member that is not a neighbour comes back not_linked", "[session]") {
  constexpr nv::peer_id a_id = 0xa000000000000001, b_id = 0xb000000000000002, c_id = 0xc000000000000003;
  meshed_session a(1, a_id), b(2, b_id), c(3, c_id);
  mesh_owner owner;
  owner.add(1, a);
  owner.add(2, b);
  owner.add(3, c);
  for (auto* s : {&a, &b, &c}) s->send(hello());
  nv::join seed;
  seed.swarm = swarm_url(1);
  seed.size = 1 << 20;
  seed.block_size = 65536;
  seed.have = nv::join::holding::all;
  a.send(nv::encode_join(seed));
  b.send(join(1));
  c.send(join(1));
  owner.run();
  // B and C both have the seed A, which is useful to them, and not each other.
  const auto neighbours = [&](nv::peer_id id) {
    std::set<nv::peer_id> ids;
    for (const auto& [n, initiator] : owner.m.neighbors_of(swarm_url(1), id)) ids.insert(n);
    return ids;
  };
  REQUIRE(neighbours(b_id) == std::set<nv::peer_id>{a_id});
  REQUIRE(neighbours(c_id) == std::set<nv::peer_id>{a_id});

  b.send(signal_to(a_id, "from-b"));
  owner.run();
  REQUIRE(a.received("signal").size() == 1);
  CHECK(a.received("signal")[0]["from"] == nv::format_peer_id(b_id));
  CHECK(a.received("signal")[0]["data"]["sdp"] == "from-b");

  // C to B, again and again (more than max_protocol_errors): each an error to C, nothing to B.
  for (int i = 0; i < 5; ++i) c.send(signal_to(b_id, "from-c"));
  owner.run();
  const auto errors = c.received("error");
  REQUIRE(errors.size() == 5);
  for (const auto& e : errors) {
    CHECK(e["code"] == "not_linked");
    CHECK(e["ref"] == "signal");
    CHECK(e["swarm"] == swarm_url(1));
  }
  CHECK(b.received("signal").empty());
  // The swarm's refusals of well-formed messages don't count toward closing the connection,
  // and are counted once, by the mesh.
  CHECK(c.transport.close_calls == 0);
  CHECK(c.counters.errors[code_index(nv::error_code::not_linked)] == 0);
  CHECK(owner.m.counters().errors[code_index(nv::error_code::not_linked)] == 5);
  CHECK(owner.m.counters().signal_failures_not_linked == 5);
  // C's neighbour still hears it.
  c.send(signal_to(a_id, "from-c"));
  owner.run();
  REQUIRE(a.received("signal").size() == 2);
  CHECK(a.received("signal")[1]["from"] == nv::format_peer_id(c_id));
}

TEST_CASE("native session: home messages and closing", "[session]") {
  harness h;
  h.send(hello());
  h.router.owner = 4;
  h.send(join(1));
  const auto joined_type = static_cast<std::uint8_t>(index_in<nv::server_message, nv::joined>());
  h.session.on_home_message(ss::outbound{std::make_shared<const std::string>("joined!"), joined_type});
  h.transport.refuse = true;
  h.session.on_home_message(ss::outbound{std::make_shared<const std::string>("lost"), joined_type});
  CHECK(h.transport.sent.size() == 2);
  CHECK(h.transport.sent.back() == "joined!");
  CHECK(h.counters.sent[joined_type] == 1);

  h.session.on_closed();
  REQUIRE(h.router.closed.size() == 1);
  CHECK(h.router.closed[0].gone.conn == harness::id);
  CHECK(h.router.closed[0].gone.native_peer == first_peer_id);
  CHECK(h.router.closed[0].route_seen.owners_used == (1u << 4));
}

}  // namespace

TEST_CASE("native session: swarms per address and the swarms a token allows", "[session]") {
  cfg::config config = cfg::load({});
  ss::address_limits per_address({.swarms = 2});
  swarmcoord::metrics::limit_counters limited;
  fake_transport t1, t2;
  fake_router r1, r2;
  swarmcoord::metrics::native_session_counters counters;
  const auto client = ip_address::v4(198, 51, 100, 23);
  ss::grant g;
  g.restricted = true;
  g.urls = {"https://cdn.example.com/seg-*"};
  nv::peer_id next = first_peer_id;
  ss::native_session a(t1, r1, counters, config, 1, client, {}, [&] { return next++; }, {{}, &per_address, &limited});
  ss::native_session b(t2, r2, counters, config, 2, client, {}, [&] { return next++; }, {g, &per_address, &limited});
  a.on_message(hello());
  b.on_message(hello());
  a.on_message(join(1));
  b.on_message(join(2));
  b.on_message(join(3));  // the address's third
  nv::join other;
  other.swarm = "https://elsewhere.example.com/x";
  other.size = 1 << 20;
  other.block_size = 65536;
  b.on_message(nv::encode_join(other));  // not in the token
  CHECK(r2.native<nv::join>().size() == 1);
  std::vector<std::string> codes;
  for (const auto& text : r2.home_texts()) codes.push_back(json::parse(text).value("code", ""));
  CHECK(codes == std::vector<std::string>{"too_many_swarms", "not_allowed"});
  CHECK(limited.refused[static_cast<std::size_t>(swarmcoord::metrics::limit::swarms_per_address)] == 1);
  // A leave gives the slot back, for any connection of the address.
  a.on_message(leave(1));
  b.on_message(join(3));
  CHECK(r2.native<nv::join>().size() == 2);
  CHECK(per_address.of(client).swarms == 2);
  b.on_closed();
  CHECK(per_address.of(client).swarms == 0);
}
