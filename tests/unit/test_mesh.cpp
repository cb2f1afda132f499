// The native-protocol mesh: who is told to connect to whom. Scenario tests with explicit
// locations and fixed seeds. After every operation a harness applies every `joined` and
// `neighbors` message to a model of what each client was told and checks it against the mesh
// (neighbors_of), checks the mesh invariants, the degree caps and the availability counts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/bitfield.hpp"
#include "protocol/native.hpp"
#include "server/swarm/address.hpp"
#include "server/swarm/mesh.hpp"

namespace {

namespace nv = swarmcoord::protocol::native;
using swarmcoord::swarm::ip_address;
using swarmcoord::swarm::location;
using swarmcoord::swarm::locality_between;
using swarmcoord::swarm::mesh;
using swarmcoord::swarm::mesh_config;
using swarmcoord::swarm::mesh_connection_id;
using swarmcoord::swarm::join_outcome;
using swarmcoord::swarm::mesh_outgoing;
using swarmcoord::swarm::member_info;
using swarmcoord::swarm::subnet_key;
using bits = std::vector<bool>;
using view_key = std::pair<std::string, nv::peer_id>;

const std::string K1 = "https://cdn.example/a.mp4";
const std::string K2 = "https://cdn.example/b.mp4";
constexpr std::uint32_t block_size = 1024;

std::uint16_t country(const char* cc) {
  return static_cast<std::uint16_t>((static_cast<unsigned>(cc[0]) << 8) | static_cast<unsigned>(cc[1]));
}
std::uint64_t subnet_of(const char* ip) {
  auto a = ip_address::parse(ip);
  REQUIRE(a);
  return subnet_key(*a);
}
// Somewhere nobody else is: no site, a subnet of its own, unknown ASN and country.
location far_away(std::uint32_t n) { return {0, 0x4000000000000000ull + n, 0, 0}; }

// The contract's locality tiers, written out independently of the implementation.
nv::locality expected_locality(const location& a, const location& b) {
  if (a.site != 0 && a.site == b.site) return nv::locality::site;
  if (a.subnet == b.subnet) return nv::locality::subnet;
  if (a.asn != 0 && a.asn == b.asn) return nv::locality::asn;
  if (a.country != 0 && a.country == b.country) return nv::locality::country;
  return nv::locality::remote;
}

bits none_of(std::uint32_t n) { return bits(n, false); }
bits all_of(std::uint32_t n) { return bits(n, true); }
bits range_of(std::uint32_t n, std::uint32_t from, std::uint32_t to) {
  bits b(n);
  for (std::uint32_t i = from; i < to; ++i) b[i] = true;
  return b;
}
bits random_bits(std::uint32_t n, std::mt19937_64& rng, double density) {
  std::bernoulli_distribution d(density);
  bits b(n);
  for (std::uint32_t i = 0; i < n; ++i) b[i] = d(rng);
  return b;
}
std::string wire(const bits& b) {
  std::string out((b.size() + 7) / 8, '\0');
  for (std::size_t i = 0; i < b.size(); ++i)
    if (b[i]) out[i / 8] = static_cast<char>(static_cast<unsigned char>(out[i / 8]) | (0x80u >> (i % 8)));
  return out;
}
std::uint32_t count(const bits& b) { return static_cast<std::uint32_t>(std::count(b.begin(), b.end(), true)); }
// Blocks `from` has that `to` lacks.
std::uint32_t gives(const bits& from, const bits& to) {
  std::uint32_t n = 0;
  for (std::size_t i = 0; i < from.size(); ++i) n += from[i] && !to[i];
  return n;
}

class world {
 public:
  explicit world(mesh_config config = {}, std::uint64_t seed = 1) : m(config, seed) {}
  // The blocks the next join_raw() stands for, when it succeeds.
  void pending_for_test(const bits& b) { pending_bits_ = b; }

  mesh m;
  swarmcoord::swarm::mesh_time_ms now = 1'000'000;  // the clock of the next operation
  std::vector<mesh_outgoing> out;  // the last operation's messages
  std::map<nv::peer_id, member_info> peers;
  std::map<mesh_connection_id, nv::peer_id> by_conn;
  std::map<view_key, std::map<nv::peer_id, bool>> view;  // neighbours each client was told about
  std::map<view_key, bits> have;                          // blocks each member holds
  std::map<std::string, std::uint32_t> blocks_of;         // swarms ever joined
  std::vector<std::pair<nv::peer_id, nv::neighbors>> log; // every neighbors message ever sent

  static mesh_connection_id conn_of(nv::peer_id id) { return 500000 + id * 3; }

  void add_peer(nv::peer_id id, std::uint32_t max_neighbors, location where) {
    peers[id] = member_info{conn_of(id), id, max_neighbors, where};
    by_conn[conn_of(id)] = id;
  }

  // join with a bitfield (or "all" when seed); blocks of resource = b.size().
  void join(nv::peer_id id, const bits& b, bool as_all = false, const std::string& key = K1) {
    nv::join j;
    j.swarm = key;
    j.size = std::uint64_t{b.size()} * block_size - 7;  // a short last block
    j.block_size = block_size;
    if (as_all) j.have = nv::join::holding::all;
    else if (count(b) > 0) {
      j.have = nv::join::holding::some;
      j.bitfield_bytes = wire(b);
    }
    pending_bits_ = b;
    join_raw(id, std::move(j));
  }
  void join_empty(nv::peer_id id, std::uint32_t n = 64, const std::string& key = K1) { join(id, none_of(n), false, key); }
  void join_seed(nv::peer_id id, std::uint32_t n = 64, const std::string& key = K1) { join(id, all_of(n), true, key); }

  void join_raw(nv::peer_id id, nv::join&& j) {
    out.clear();
    const std::string key = j.swarm;
    const auto size = j.size;
    const auto bs = j.block_size;
    m.on_join(peers.at(id), std::move(j), now, out);
    if (!has_error()) {
      blocks_of[key] = static_cast<std::uint32_t>((size + bs - 1) / bs);
      have[{key, id}] = pending_bits_;
    }
    settle();
  }

  void report(nv::peer_id id, const nv::report& r) {
    out.clear();
    m.on_report(peers.at(id), r, now, out);
    settle();
  }

  void have_blocks(nv::peer_id id, std::vector<std::uint32_t> blocks, const std::string& key = K1) {
    out.clear();
    m.on_have(peers.at(id), nv::have{key, blocks}, out);
    if (!has_error())
      for (auto b : blocks) have.at({key, id}).at(b) = true;
    settle();
  }

  void leave(nv::peer_id id, const std::string& key = K1) {
    out.clear();
    m.on_leave(peers.at(id), nv::leave{key}, now, out);
    if (!has_error()) {
      view.erase({key, id});
      have.erase({key, id});
    }
    settle();
  }

  void gone(nv::peer_id id) {
    out.clear();
    m.on_peer_gone(id, now, out);
    for (auto it = view.begin(); it != view.end();) it = it->first.second == id ? view.erase(it) : std::next(it);
    for (auto it = have.begin(); it != have.end();) it = it->first.second == id ? have.erase(it) : std::next(it);
    settle();
    for (const auto& o : out) CHECK(o.to != conn_of(id));
  }

  void replan() {
    out.clear();
    m.replan(now, out);
    settle();
  }
  // Re-plans until nothing changes any more.
  void drain() {
    for (int i = 0; i < 50; ++i) {
      replan();
      if (out.empty()) return;
    }
    FAIL("replan keeps producing messages");
  }

  bool has_error() const {
    return std::any_of(out.begin(), out.end(), [](const mesh_outgoing& o) { return std::holds_alternative<nv::error>(o.message); });
  }
  std::vector<nv::error> errors_to(nv::peer_id id) const {
    std::vector<nv::error> e;
    for (const auto& o : out)
      if (o.to == conn_of(id))
        if (auto* x = std::get_if<nv::error>(&o.message)) e.push_back(*x);
    return e;
  }
  std::vector<nv::neighbors> neighbor_messages_to(nv::peer_id id) const {
    std::vector<nv::neighbors> r;
    for (const auto& o : out)
      if (o.to == conn_of(id))
        if (auto* x = std::get_if<nv::neighbors>(&o.message)) r.push_back(*x);
    return r;
  }
  std::size_t messages_to(nv::peer_id id) const {
    return static_cast<std::size_t>(std::count_if(out.begin(), out.end(), [&](const mesh_outgoing& o) { return o.to == conn_of(id); }));
  }

  std::set<nv::peer_id> neighbors(nv::peer_id id, const std::string& key = K1) const {
    std::set<nv::peer_id> s;
    for (const auto& [n, initiator] : m.neighbors_of(key, id)) s.insert(n);
    return s;
  }
  bool linked(nv::peer_id a, nv::peer_id b, const std::string& key = K1) const { return neighbors(a, key).count(b) > 0; }
  // Neighbours that have at least one block `id` lacks.
  std::size_t givers(nv::peer_id id, const std::string& key = K1) const {
    std::size_t n = 0;
    for (auto q : neighbors(id, key)) n += gives(have.at({key, q}), have.at({key, id})) > 0;
    return n;
  }
  std::vector<nv::peer_id> members(const std::string& key = K1) const {
    std::vector<nv::peer_id> r;
    for (const auto& [k, v] : have)
      if (k.first == key) r.push_back(k.second);
    return r;
  }

  // Everything observable about the swarms, for "state untouched" checks.
  std::string snapshot() const {
    nlohmann::json j;
    for (const auto& [key, blocks] : blocks_of) {
      j[key]["availability"] = m.availability(key);
      for (const auto& [id, info] : peers) {
        auto n = m.neighbors_of(key, id);
        std::sort(n.begin(), n.end());
        j[key]["neighbors"][std::to_string(id)] = n;
      }
    }
    const auto t = m.totals();
    j["totals"] = {t.swarms, t.seeds, t.leechers, t.links};
    return j.dump();
  }

 private:
  bits pending_bits_;

  void settle() {
    INFO("after an operation");
    REQUIRE(m.check_invariants() == "");
    apply_messages();
    check_truth();
  }

  void apply_messages() {
    for (const auto& o : out) {
      REQUIRE(by_conn.count(o.to));
      const nv::peer_id to = by_conn.at(o.to);
      if (auto* j = std::get_if<nv::joined>(&o.message)) {
        view.try_emplace({j->swarm, to});  // a re-join keeps the view: the old links come as remove
        CHECK(j->blocks == blocks_of.at(j->swarm));
      } else if (auto* n = std::get_if<nv::neighbors>(&o.message)) {
        INFO("neighbors message to " << to << " in " << n->swarm);
        log.emplace_back(to, *n);
        auto v = view.find({n->swarm, to});
        REQUIRE(v != view.end());  // only members hear about neighbours
        for (auto r : n->remove) {
          INFO("remove " << r);
          REQUIRE(v->second.erase(r) == 1);
        }
        for (const auto& a : n->add) {
          INFO("add " << a.id);
          REQUIRE(v->second.count(a.id) == 0);
          REQUIRE(a.id != to);
          v->second[a.id] = a.initiator;
          CHECK(a.where == expected_locality(peers.at(to).where, peers.at(a.id).where));
          CHECK(a.have == count(have.at({n->swarm, a.id})));
        }
      }
    }
  }

  void check_truth() {
    for (const auto& [key, told] : view) {
      INFO("member " << key.second << " of " << key.first);
      std::map<nv::peer_id, bool> actual;
      for (const auto& [n, initiator] : m.neighbors_of(key.first, key.second)) actual[n] = initiator;
      CHECK(actual == told);
      CHECK(actual.size() <= peers.at(key.second).max_neighbors);
      for (const auto& [n, initiator] : actual) {
        // Symmetric, one initiator.
        auto back = m.neighbors_of(key.first, n);
        auto it = std::find_if(back.begin(), back.end(), [&](const auto& p) { return p.first == key.second; });
        REQUIRE(it != back.end());
        CHECK(it->second != initiator);
      }
    }
    for (const auto& [key, blocks] : blocks_of) {
      std::vector<std::uint32_t> expect(blocks, 0);
      bool any = false;
      for (const auto& [k, b] : have)
        if (k.first == key) {
          any = true;
          for (std::uint32_t i = 0; i < blocks; ++i) expect[i] += b[i];
        }
      INFO("availability of " << key);
      CHECK(m.availability(key) == (any ? expect : std::vector<std::uint32_t>{}));
    }
    for (const auto& [id, info] : peers)
      for (const auto& [key, blocks] : blocks_of)
        if (!view.count({key, id})) CHECK(m.neighbors_of(key, id).empty());
  }
};

}  // namespace

// ------------------------------------------------------------------ locality

TEST_CASE("mesh: locality tiers and subnet keys", "[mesh]") {
  // IPv4 /24, IPv6 /48.
  CHECK(subnet_of("10.1.2.3") == subnet_of("10.1.2.250"));
  CHECK(subnet_of("10.1.2.3") != subnet_of("10.1.3.3"));
  CHECK(subnet_of("10.1.2.3") != subnet_of("11.1.2.3"));
  CHECK(subnet_of("2001:db8:1::1") == subnet_of("2001:db8:1:ffff:ffff::2"));
  CHECK(subnet_of("2001:db8:1::1") != subnet_of("2001:db8:2::1"));
  CHECK(subnet_of("::ffff:10.1.2.3") == subnet_of("10.1.2.77"));
  // A v4 /24 never meets a v6 /48 whose first bytes look alike.
  CHECK(subnet_of("10.1.2.3") != subnet_of("a01:200::1"));
  CHECK(subnet_of("0.0.0.1") != subnet_of("::1"));

  const location base{7, subnet_of("10.1.2.3"), 3320, country("DE")};
  CHECK(locality_between(base, {7, subnet_of("192.0.2.1"), 1, country("FR")}) == nv::locality::site);
  CHECK(locality_between(base, {0, subnet_of("10.1.2.99"), 1, country("FR")}) == nv::locality::subnet);
  CHECK(locality_between(base, {8, subnet_of("10.1.9.1"), 3320, country("FR")}) == nv::locality::asn);
  CHECK(locality_between(base, {8, subnet_of("10.1.9.1"), 1, country("DE")}) == nv::locality::country);
  CHECK(locality_between(base, {8, subnet_of("10.1.9.1"), 1, country("FR")}) == nv::locality::remote);
  // Unknown site, ASN and country (0) are not a match.
  const location unknown_a{0, subnet_of("10.0.0.1"), 0, 0}, unknown_b{0, subnet_of("10.9.0.1"), 0, 0};
  CHECK(locality_between(unknown_a, unknown_b) == nv::locality::remote);
  // The tiers are symmetric.
  std::mt19937_64 rng(3);
  for (int i = 0; i < 2000; ++i) {
    location a{static_cast<std::uint32_t>(rng() % 3), rng() % 3, static_cast<std::uint32_t>(rng() % 3),
               static_cast<std::uint16_t>(rng() % 3)};
    location b{static_cast<std::uint32_t>(rng() % 3), rng() % 3, static_cast<std::uint32_t>(rng() % 3),
               static_cast<std::uint16_t>(rng() % 3)};
    CHECK(locality_between(a, b) == locality_between(b, a));
    CHECK(locality_between(a, b) == expected_locality(a, b));
  }
}

// ------------------------------------------------------------------ joining

TEST_CASE("mesh: the joiner gets joined, then neighbors", "[mesh]") {
  world w;
  for (nv::peer_id id = 1; id <= 4; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));

  w.join_seed(1, 100);
  REQUIRE(w.out.size() == 2);
  CHECK(w.out[0].to == world::conn_of(1));
  REQUIRE(std::holds_alternative<nv::joined>(w.out[0].message));
  const auto& j = std::get<nv::joined>(w.out[0].message);
  CHECK(j.swarm == K1);
  CHECK(j.blocks == 100);
  CHECK(j.peers == 0);
  CHECK(w.out[1].to == world::conn_of(1));
  REQUIRE(std::holds_alternative<nv::neighbors>(w.out[1].message));
  CHECK(std::get<nv::neighbors>(w.out[1].message).swarm == K1);
  CHECK(std::get<nv::neighbors>(w.out[1].message).add.empty());
  CHECK(std::get<nv::neighbors>(w.out[1].message).remove.empty());

  for (nv::peer_id id = 2; id <= 4; ++id) {
    w.join_empty(id, 100);
    // The first message to the joiner is joined (with the members already there), then neighbors.
    std::vector<const nv::server_message*> mine;
    for (const auto& o : w.out)
      if (o.to == world::conn_of(id)) mine.push_back(&o.message);
    REQUIRE(mine.size() == 2);
    REQUIRE(std::holds_alternative<nv::joined>(*mine[0]));
    CHECK(std::get<nv::joined>(*mine[0]).peers == id - 1);
    REQUIRE(std::holds_alternative<nv::neighbors>(*mine[1]));
    const auto& n = std::get<nv::neighbors>(*mine[1]);
    // The seed has room and is the one useful peer: every joiner gets it.
    REQUIRE_FALSE(n.add.empty());
    CHECK(std::any_of(n.add.begin(), n.add.end(), [](const nv::neighbor& a) { return a.id == 1; }));
    CHECK(w.linked(id, 1));
  }
}

TEST_CASE("mesh: links are symmetric with exactly one initiator, in the mesh and in the messages", "[mesh]") {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    world w({}, seed);
    std::mt19937_64 rng(seed);
    for (nv::peer_id id = 1; id <= 30; ++id) {
      w.add_peer(id, static_cast<std::uint32_t>(1 + rng() % 6), far_away(static_cast<std::uint32_t>(id % 7)));
      const int kind = static_cast<int>(rng() % 3);
      if (kind == 0) w.join_seed(id);
      else if (kind == 1) w.join_empty(id);
      else w.join(id, random_bits(64, rng, 0.4));
      // Every add in this operation's messages has its mirror image, with the other initiator flag.
      for (const auto& o : w.out) {
        auto* n = std::get_if<nv::neighbors>(&o.message);
        if (!n) continue;
        const auto me = w.by_conn.at(o.to);
        for (const auto& a : n->add) {
          bool mirrored = false;
          for (const auto& p : w.neighbor_messages_to(a.id))
            for (const auto& b : p.add)
              if (b.id == me) {
                mirrored = true;
                CHECK(b.initiator != a.initiator);
                CHECK(b.where == a.where);
              }
          CHECK(mirrored);
        }
      }
    }
    CHECK(w.m.totals().links > 0);
  }
}

TEST_CASE("mesh: a peer never has more than its max_neighbors", "[mesh]") {
  for (std::uint64_t seed : {11u, 12u}) {
    world w({}, seed);
    std::mt19937_64 rng(seed);
    std::vector<nv::peer_id> ids;
    for (nv::peer_id id = 1; id <= 40; ++id) {
      const std::uint32_t cap = id % 4 == 0 ? 1 : static_cast<std::uint32_t>(1 + rng() % 3);
      w.add_peer(id, cap, location{static_cast<std::uint32_t>(rng() % 3), rng() % 4, 0, 0});
      if (id % 5 == 0) w.join_seed(id);
      else w.join(id, random_bits(64, rng, id % 3 * 0.3));
      ids.push_back(id);
    }
    for (int i = 0; i < 100; ++i) {
      const auto id = ids[rng() % ids.size()];
      w.have_blocks(id, {static_cast<std::uint32_t>(rng() % 64), static_cast<std::uint32_t>(rng() % 64)});
      if (i % 10 == 0) w.replan();
    }
    w.drain();
    // The harness checked the cap after every step; also: capped peers with useful candidates are used.
    for (auto id : ids) CHECK(w.neighbors(id).size() <= w.peers[id].max_neighbors);
    std::size_t full = 0;
    for (auto id : ids) full += w.neighbors(id).size() == w.peers[id].max_neighbors;
    CHECK(full > ids.size() / 2);
  }
}

// ------------------------------------------------------------------ usefulness

TEST_CASE("mesh: an empty joiner gets holders before empty peers, even nearer ones", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    world w({}, seed);
    std::mt19937_64 rng(seed * 77);
    const location home{9, subnet_of("10.0.0.1"), 100, country("NL")};
    // Five empty peers right next to the joiner, three partial holders far away.
    for (nv::peer_id id = 1; id <= 5; ++id) {
      w.add_peer(id, 8, home);
      w.join_empty(id);
    }
    for (nv::peer_id id = 11; id <= 13; ++id) {
      w.add_peer(id, 16, far_away(static_cast<std::uint32_t>(id)));  // room for everyone
      w.join(id, random_bits(64, rng, 0.3 + 0.1 * static_cast<double>(id - 11)));
    }
    // Fewer slots than holders: only holders.
    w.add_peer(100, 2, home);
    w.join_empty(100);
    const auto n = w.neighbors(100);
    CHECK(n.size() == 2);
    for (auto q : n) CHECK(q >= 11);
    // More slots than holders: every holder.
    w.add_peer(101, 8, home);
    w.join_empty(101);
    for (nv::peer_id h = 11; h <= 13; ++h) CHECK(w.linked(101, h));
  }
}

TEST_CASE("mesh: more useful candidates come first, far beats near when much more useful", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    world w({}, seed);
    const location home{9, subnet_of("10.0.0.1"), 100, country("NL")};
    w.add_peer(1, 8, far_away(1));
    w.join(1, range_of(64, 0, 60));  // 60 blocks, far away
    w.add_peer(2, 8, home);
    w.join(2, range_of(64, 60, 64));  // 4 blocks, same site
    w.add_peer(100, 1, home);
    w.join_empty(100);
    CHECK(w.neighbors(100) == std::set<nv::peer_id>{1});
  }
}

TEST_CASE("mesh: blocks a candidate gives count more than blocks it would take", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    world w({}, seed);
    const location home{9, subnet_of("10.0.0.1"), 100, country("NL")};
    // The joiner holds 0..15. Candidate 1 (far) has 0..31: gives 16, takes 0.
    // Candidate 2 (same site) has nothing: gives 0, takes 16.
    w.add_peer(1, 8, far_away(1));
    w.join(1, range_of(64, 0, 32));
    w.add_peer(2, 8, home);
    w.join_empty(2);
    w.add_peer(100, 1, home);
    w.join(100, range_of(64, 0, 16));
    CHECK(w.neighbors(100) == std::set<nv::peer_id>{1});
  }
}

TEST_CASE("mesh: what a peer can give counts too: a seed is sent to those who lack most", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    world w({}, seed);
    const location home{9, subnet_of("10.0.0.1"), 100, country("NL")};
    w.add_peer(1, 8, far_away(1));
    w.join_empty(1);  // lacks everything
    w.add_peer(2, 8, home);
    w.join(2, range_of(64, 0, 60));  // lacks 4, same site
    w.add_peer(100, 1, home);
    w.join_seed(100);
    CHECK(w.neighbors(100) == std::set<nv::peer_id>{1});
  }
}

TEST_CASE("mesh: a seed is useful to anyone missing a block", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    world w({}, seed);
    const location home{9, subnet_of("10.0.0.1"), 100, country("NL")};
    w.add_peer(1, 8, far_away(1));
    w.join_seed(1);
    // A twin with the very same blocks, on the same site: useless to the joiner.
    w.add_peer(2, 8, home);
    w.join(2, range_of(64, 0, 63));
    w.add_peer(100, 1, home);
    w.join(100, range_of(64, 0, 63));  // missing only block 63
    CHECK(w.neighbors(100) == std::set<nv::peer_id>{1});
  }
}

// ------------------------------------------------------------------ locality

TEST_CASE("mesh: among comparably useful candidates: site, subnet, asn, country, remote", "[mesh]") {
  const std::uint16_t nl = country("NL"), de = country("DE");
  struct addressing {
    const char* name;
    std::uint64_t joiner_subnet, same_subnet, other_subnet;
  };
  const addressing variants[] = {
      {"IPv4 /24", subnet_of("10.1.2.3"), subnet_of("10.1.2.200"), subnet_of("10.1.3.3")},
      {"IPv6 /48", subnet_of("2001:db8:1:2::5"), subnet_of("2001:db8:1:ffff::9"), subnet_of("2001:db8:2::5")},
  };
  for (const auto& v : variants) {
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      INFO(v.name << " seed " << seed);
      world w({}, seed);
      const location joiner{5, v.joiner_subnet, 64500, nl};
      // Every candidate is a seed: equally useful; only the place differs.
      const std::pair<nv::peer_id, location> seeds[] = {
          {10, {5, subnet_of("192.0.2.1"), 1, de}},           // site
          {20, {6, v.same_subnet, 2, de}},                    // subnet
          {30, {7, v.other_subnet, 64500, de}},               // asn
          {40, {8, subnet_of("198.51.100.1"), 3, nl}},        // country
          {50, {9, subnet_of("203.0.113.1"), 4, de}},         // remote
      };
      const nv::locality tiers[] = {nv::locality::site, nv::locality::subnet, nv::locality::asn, nv::locality::country,
                                    nv::locality::remote};
      std::vector<std::size_t> order = {0, 1, 2, 3, 4};
      std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
      for (auto i : order) {
        w.add_peer(seeds[i].first, 8, seeds[i].second);
        w.join_seed(seeds[i].first);
      }
      w.add_peer(1, 1, joiner);
      w.join_empty(1);
      for (std::size_t t = 0; t < 5; ++t) {
        INFO("tier " << nv::to_string(tiers[t]));
        REQUIRE(w.neighbors(1) == std::set<nv::peer_id>{seeds[t].first});
        // Drop the nearest: the joiner is refilled with the next tier, in the same step.
        if (t == 4) break;
        if (t % 2) w.leave(seeds[t].first);
        else w.gone(seeds[t].first);
        auto msgs = w.neighbor_messages_to(1);
        REQUIRE(msgs.size() == 1);
        CHECK(msgs[0].remove == std::vector<nv::peer_id>{seeds[t].first});
        REQUIRE(msgs[0].add.size() == 1);
        CHECK(msgs[0].add[0].id == seeds[t + 1].first);
        CHECK(msgs[0].add[0].where == tiers[t + 1]);
      }
    }
  }
}

TEST_CASE("mesh: locality decides between comparable usefulness, not against much more", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const location home{9, subnet_of("10.0.0.1"), 100, country("NL")};
    {  // 40 blocks on the same site beat 44 blocks far away
      world w({}, seed);
      w.add_peer(1, 8, far_away(1));
      w.join(1, range_of(64, 0, 44));
      w.add_peer(2, 8, home);
      w.join(2, range_of(64, 20, 60));
      w.add_peer(100, 1, home);
      w.join_empty(100);
      CHECK(w.neighbors(100) == std::set<nv::peer_id>{2});
    }
    {  // same ASN beats remote for equal blocks
      world w({}, seed);
      w.add_peer(1, 8, far_away(1));
      w.join(1, range_of(64, 0, 32));
      w.add_peer(2, 8, location{0, subnet_of("172.16.0.1"), 100, 0});
      w.join(2, range_of(64, 32, 64));
      w.add_peer(100, 1, home);
      w.join_empty(100);
      CHECK(w.neighbors(100) == std::set<nv::peer_id>{2});
    }
  }
}

TEST_CASE("mesh: seeds are not linked to each other, empty peers are when nothing else exists", "[mesh]") {
  world w({}, 21);
  for (nv::peer_id id = 1; id <= 6; ++id) {
    w.add_peer(id, 3, far_away(static_cast<std::uint32_t>(id)));
    w.join_seed(id);
    // A link between two seeds could never carry a block: it would only use up their slots.
    CHECK(w.neighbors(id).empty());
  }
  // Empty peers in a swarm without holders still get a link or two, ready for when blocks come.
  world e({}, 22);
  for (nv::peer_id id = 1; id <= 6; ++id) {
    e.add_peer(id, 3, far_away(static_cast<std::uint32_t>(id)));
    e.join_empty(id);
    if (id > 1) CHECK_FALSE(e.neighbors(id).empty());
  }
}

// ------------------------------------------------------------------ fair share

TEST_CASE("mesh: a needy peer takes a seed's link from a peer that has two", "[mesh]") {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    INFO("seed " << seed);
    world w({}, seed);
    w.add_peer(1, 2, far_away(1));
    w.add_peer(2, 2, far_away(2));
    w.join_seed(1);
    w.join_seed(2);
    // A comes while both seeds have room: it gets both.
    w.add_peer(10, 8, far_away(10));
    w.join_empty(10);
    REQUIRE(w.linked(10, 1));
    REQUIRE(w.linked(10, 2));
    for (nv::peer_id id = 11; id <= 13; ++id) {
      w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
      w.join_empty(id);
      w.drain();
    }
    bool a_lost_one = false;
    for (const auto& [to, n] : w.log)
      if (to == 10)
        for (auto r : n.remove) a_lost_one = a_lost_one || r == 1 || r == 2;
    // Four seed slots, four empty peers: each ends up with one seed; A was told it lost one.
    CHECK(a_lost_one);
    for (nv::peer_id id = 10; id <= 13; ++id) {
      INFO("peer " << id);
      CHECK(w.givers(id) == 1);
    }
  }
}

TEST_CASE("mesh: a peer reported for corrupt blocks is unlinked from the reporter for good", "[mesh]") {
  world w;
  w.add_peer(1, 8, far_away(1));  // the poisoned seed
  w.add_peer(2, 8, far_away(2));  // an honest seed
  w.join_seed(1);
  w.join_seed(2);
  w.add_peer(10, 8, far_away(10));
  w.join_empty(10);
  REQUIRE(w.linked(10, 1));
  REQUIRE(w.linked(10, 2));
  nv::report r{K1, 0, 0, 0};
  r.bad_peers = {1, 10, 999};  // itself and a stranger are ignored
  w.report(10, r);
  CHECK(w.m.counters().bad_peer_reports == 1);
  CHECK_FALSE(w.linked(10, 1));
  CHECK(w.linked(10, 2));
  // Both ends were told.
  bool told_reporter = false, told_reported = false;
  for (const auto& o : w.out)
    if (auto* n = std::get_if<nv::neighbors>(&o.message)) {
      told_reporter = told_reporter || (o.to == world::conn_of(10) && n->remove == std::vector<nv::peer_id>{1});
      told_reported = told_reported || (o.to == world::conn_of(1) && n->remove == std::vector<nv::peer_id>{10});
    }
  CHECK(told_reporter);
  CHECK(told_reported);
  // Naming it again (no link left) is counted but changes nothing and sends nothing.
  w.report(10, r);
  CHECK(w.m.counters().bad_peer_reports == 2);
  CHECK(w.out.empty());
  // Neither a re-plan of the reporter nor one of the reported peer links them again.
  w.join_empty(10);
  w.drain();
  CHECK_FALSE(w.linked(10, 1));
  w.join_seed(1);
  w.drain();
  CHECK_FALSE(w.linked(10, 1));
  CHECK(w.m.check_invariants().empty());
}

TEST_CASE("mesh: 4 seeds x 3 slots and 8 empty peers: every empty peer ends up with a holder", "[mesh]") {
  enum order { seeds_first, empties_first, interleaved, shuffled };
  for (auto o : {seeds_first, empties_first, interleaved, shuffled}) {
    for (std::uint64_t seed = 1; seed <= 8; ++seed) {
      INFO("order " << o << " seed " << seed);
      world w({}, seed);
      std::vector<nv::peer_id> joins;
      const std::vector<nv::peer_id> seeds = {1, 2, 3, 4}, empties = {11, 12, 13, 14, 15, 16, 17, 18};
      for (auto s : seeds) w.add_peer(s, 3, far_away(static_cast<std::uint32_t>(s)));
      for (auto e : empties) w.add_peer(e, 8, far_away(static_cast<std::uint32_t>(e)));
      switch (o) {
        case seeds_first: joins = {1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 17, 18}; break;
        case empties_first: joins = {11, 12, 13, 14, 15, 16, 17, 18, 1, 2, 3, 4}; break;
        case interleaved: joins = {11, 1, 12, 13, 2, 14, 15, 3, 16, 17, 4, 18}; break;
        case shuffled:
          joins = {1, 2, 3, 4, 11, 12, 13, 14, 15, 16, 17, 18};
          std::shuffle(joins.begin(), joins.end(), std::mt19937_64(seed));
          break;
      }
      for (auto id : joins) {
        if (id < 10) w.join_seed(id);
        else w.join_empty(id);
        if (seed % 2) w.drain();  // with and without re-plans between joins
      }
      w.drain();
      std::size_t without = 0, with_several = 0;
      for (auto e : empties) {
        INFO("empty peer " << e);
        CHECK(w.givers(e) >= 1);
        without += w.givers(e) == 0;
        with_several += w.givers(e) >= 2;
      }
      // Nobody keeps several seeds while somebody has none.
      CHECK((without == 0 || with_several == 0));
    }
  }
}

// ------------------------------------------------------------------ leave and disconnect

TEST_CASE("mesh: on leave the neighbours are told and refilled from the swarm", "[mesh]") {
  for (bool by_disconnect : {false, true}) {
    INFO((by_disconnect ? "peer gone" : "leave"));
    world w({}, 4);
    w.add_peer(1, 8, far_away(1));
    w.join_seed(1);
    for (nv::peer_id e = 11; e <= 14; ++e) {
      w.add_peer(e, 1, far_away(static_cast<std::uint32_t>(e)));
      w.join_empty(e);
      REQUIRE(w.neighbors(e) == std::set<nv::peer_id>{1});
    }
    w.add_peer(2, 8, far_away(2));
    w.join_seed(2);  // every empty peer is full, and a seed has nothing to do with a seed
    REQUIRE(w.neighbors(2).empty());

    if (by_disconnect) w.gone(1);
    else w.leave(1);
    CHECK(w.messages_to(1) == 0);  // the leaver is told nothing
    for (nv::peer_id e = 11; e <= 14; ++e) {
      INFO("peer " << e);
      auto msgs = w.neighbor_messages_to(e);
      REQUIRE(msgs.size() == 1);  // one message per peer and step
      CHECK(msgs[0].remove == std::vector<nv::peer_id>{1});
      REQUIRE(msgs[0].add.size() == 1);
      CHECK(msgs[0].add[0].id == 2);
      CHECK(w.neighbors(e) == std::set<nv::peer_id>{2});
    }
    auto msgs = w.neighbor_messages_to(2);
    REQUIRE(msgs.size() == 1);
    CHECK(msgs[0].remove.empty());
    CHECK(msgs[0].add.size() == 4);
    CHECK(w.m.neighbors_of(K1, 1).empty());
  }
}

TEST_CASE("mesh: a neighbour left alone is told, with nothing to refill from", "[mesh]") {
  world w;
  w.add_peer(1, 8, far_away(1));
  w.add_peer(2, 8, far_away(2));
  w.join_seed(1);
  w.join_empty(2);
  REQUIRE(w.linked(1, 2));
  w.leave(1);
  auto msgs = w.neighbor_messages_to(2);
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].remove == std::vector<nv::peer_id>{1});
  CHECK(msgs[0].add.empty());
  CHECK(w.neighbors(2).empty());
  // The last one out closes the swarm.
  w.leave(2);
  CHECK(w.out.empty());
  CHECK(w.m.totals().swarms == 0);
  CHECK(w.m.availability(K1).empty());
}

TEST_CASE("mesh: a disconnect leaves every swarm; leave of a non-member is not_joined", "[mesh]") {
  world w;
  for (nv::peer_id id = 1; id <= 4; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
  w.join_seed(1, 64, K1);
  w.join_seed(1, 32, K2);
  w.join_empty(2, 64, K1);
  w.join_empty(3, 32, K2);
  w.join_empty(4, 32, K2);
  REQUIRE(w.linked(2, 1, K1));
  REQUIRE(w.linked(3, 1, K2));
  REQUIRE(w.m.totals().swarms == 2);

  w.leave(2, K2);
  REQUIRE(w.errors_to(2).size() == 1);
  CHECK(w.errors_to(2)[0].code == nv::error_code::not_joined);
  CHECK(w.errors_to(2)[0].ref == "leave");
  CHECK(w.out.size() == 1);

  const auto seeds_before = w.m.totals().seeds;
  w.gone(1);
  CHECK(w.m.totals().swarms == 2);
  CHECK(w.m.totals().seeds == seeds_before - 2);
  CHECK(w.neighbor_messages_to(2).size() == 1);
  CHECK(w.neighbor_messages_to(3).size() == 1);
  CHECK(w.neighbor_messages_to(4).size() == 1);
  // A second disconnect of the same peer is harmless.
  w.gone(1);
  CHECK(w.out.empty());
  w.gone(2);
  CHECK(w.m.totals().swarms == 1);
  CHECK(w.m.availability(K1).empty());
}

// ------------------------------------------------------------------ have: lazy re-planning

TEST_CASE("mesh: have only marks dirty; replan does the work once", "[mesh]") {
  world w({}, 9);
  // Four empty peers: linked only by the "couple of links anyway" rule.
  for (nv::peer_id id = 1; id <= 4; ++id) {
    w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
    w.join_empty(id);
  }
  w.drain();
  const auto before = w.neighbors(4);
  REQUIRE(before.size() < 3);
  const auto plans = w.m.counters().plans;
  const auto state = w.snapshot();

  // Peer 4 gets every block, one have message per block.
  for (std::uint32_t b = 0; b < 64; ++b) {
    w.have_blocks(4, {b});
    CHECK(w.out.empty());
  }
  CHECK(w.m.counters().plans == plans);
  CHECK(w.neighbors(4) == before);
  CHECK(w.m.availability(K1) == std::vector<std::uint32_t>(64, 1));  // counted at once
  CHECK(w.m.totals().seeds == 1);
  CHECK(w.snapshot() != state);

  w.replan();
  CHECK(w.m.counters().plans == plans + 1);
  // Now useful to all: linked to every other member, and one message per peer at most.
  CHECK(w.neighbors(4) == std::set<nv::peer_id>{1, 2, 3});
  for (nv::peer_id id = 1; id <= 4; ++id) CHECK(w.messages_to(id) <= 1);
  CHECK(w.messages_to(4) == 1);

  w.replan();
  CHECK(w.out.empty());
  CHECK(w.m.counters().plans == plans + 1);
}

TEST_CASE("mesh: many have messages from many peers: one re-plan each", "[mesh]") {
  world w({}, 10);
  std::mt19937_64 rng(10);
  for (nv::peer_id id = 1; id <= 12; ++id) {
    w.add_peer(id, 16, far_away(static_cast<std::uint32_t>(id)));
    w.join(id, random_bits(256, rng, 0.2));
  }
  w.drain();
  const auto plans = w.m.counters().plans;
  for (int i = 0; i < 500; ++i) {
    const nv::peer_id id = 1 + static_cast<nv::peer_id>(i % 10);  // peers 1..10 send haves
    w.have_blocks(id, {static_cast<std::uint32_t>(rng() % 256), static_cast<std::uint32_t>(rng() % 256)});
    CHECK(w.out.empty());
  }
  CHECK(w.m.counters().plans == plans);
  w.replan();
  CHECK(w.m.counters().plans == plans + 10);
  for (nv::peer_id id = 1; id <= 12; ++id) CHECK(w.messages_to(id) <= 1);
  // Blocks a peer already had change nothing and cost no plan.
  w.have_blocks(1, {});
  for (std::uint32_t b = 0; b < 256; ++b)
    if (w.have.at({K1, 1})[b]) w.have_blocks(1, {b, b});
  w.replan();
  CHECK(w.out.empty());
  CHECK(w.m.counters().plans == plans + 10);
}

TEST_CASE("mesh: replan works through at most replan_per_call dirty members per call", "[mesh]") {
  mesh_config c;
  c.replan_per_call = 3;
  world w(c, 5);
  for (nv::peer_id id = 1; id <= 10; ++id) {
    w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
    w.join_empty(id, 16);
  }
  for (nv::peer_id id = 1; id <= 10; ++id) w.have_blocks(id, {static_cast<std::uint32_t>(id)});
  const auto plans = w.m.counters().plans;
  w.replan();
  CHECK(w.m.counters().plans == plans + 3);
  w.replan();
  CHECK(w.m.counters().plans == plans + 6);
  w.drain();
  CHECK(w.m.counters().plans >= plans + 10);
}

// ------------------------------------------------------------------ signals and reports

// Sends a signal from `from` to `to` in swarm `key`; its result is in w.out.
void send_signal(world& w, nv::peer_id from, const std::string& key, nv::peer_id to, std::string data = "{}",
                 std::string_view kind = "other") {
  w.out.clear();
  nv::signal s;
  s.swarm = key;
  s.to = to;
  s.data = {std::move(data)};
  s.kind = kind;
  w.m.on_signal(w.peers.at(from), std::move(s), w.now, w.out);
  REQUIRE(w.m.check_invariants() == "");
}
// The signal was relayed to `to`, and nothing else happened.
bool relayed(const world& w, nv::peer_id to) {
  return w.out.size() == 1 && w.out[0].to == world::conn_of(to) &&
         std::holds_alternative<nv::signal_relay>(w.out[0].message);
}
// The sender got exactly this error.
bool refused(const world& w, nv::peer_id from, nv::error_code code) {
  if (w.out.size() != 1 || w.out[0].to != world::conn_of(from)) return false;
  const auto* e = std::get_if<nv::error>(&w.out[0].message);
  return e && e->code == code && e->ref == "signal";
}

TEST_CASE("mesh: signals are relayed only between members of the same swarm", "[mesh]") {
  world w;
  for (nv::peer_id id = 1; id <= 3; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
  w.join_seed(1, 64, K1);
  w.join_empty(2, 64, K1);
  w.join_empty(3, 64, K2);
  REQUIRE(w.linked(1, 2));
  auto signal = [&](nv::peer_id from, const std::string& key, nv::peer_id to, std::string data, std::string_view kind) {
    send_signal(w, from, key, to, std::move(data), kind);
  };

  const std::string offer = R"({"type":"offer","sdp":"v=0\r\n"})";
  signal(1, K1, 2, offer, "offer");
  REQUIRE(w.out.size() == 1);
  CHECK(w.out[0].to == world::conn_of(2));
  REQUIRE(std::holds_alternative<nv::signal_relay>(w.out[0].message));
  const auto& r = std::get<nv::signal_relay>(w.out[0].message);
  CHECK(r.swarm == K1);
  CHECK(r.from == 1);
  CHECK(r.data.text == offer);
  CHECK(w.m.counters().signals_relayed[0] == 1);

  signal(2, K1, 1, R"({"type":"answer"})", "answer");
  REQUIRE(w.out.size() == 1);
  CHECK(w.out[0].to == world::conn_of(1));
  CHECK(std::get<nv::signal_relay>(w.out[0].message).from == 2);
  CHECK(w.m.counters().signals_relayed[1] == 1);

  // Target in another swarm only: peer_not_found, nothing reaches it.
  signal(1, K1, 3, "{}", "other");
  REQUIRE(w.out.size() == 1);
  CHECK(w.out[0].to == world::conn_of(1));
  REQUIRE(std::holds_alternative<nv::error>(w.out[0].message));
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::peer_not_found);
  CHECK(std::get<nv::error>(w.out[0].message).ref == "signal");
  CHECK(w.m.counters().signal_failures_peer_not_found == 1);

  // Target unknown everywhere.
  signal(1, K1, 999, "{}", "other");
  REQUIRE(w.out.size() == 1);
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::peer_not_found);

  // A member may not signal itself: it is nobody's neighbour.
  signal(1, K1, 1, "{}", "other");
  CHECK(refused(w, 1, nv::error_code::not_linked));

  // Sender not a member of the swarm it names, even though the target is: not_joined.
  signal(3, K1, 1, offer, "offer");
  REQUIRE(w.out.size() == 1);
  CHECK(w.out[0].to == world::conn_of(3));
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::not_joined);
  CHECK(w.m.counters().signal_failures_not_joined == 1);
  signal(1, "https://cdn.example/none", 2, offer, "offer");
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::not_joined);
  CHECK(w.m.counters().signals_relayed[0] == 1);

  // After a leave, signals to the leaver fail.
  w.leave(2);
  signal(1, K1, 2, offer, "offer");
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::peer_not_found);
  // And from it.
  signal(2, K1, 1, offer, "offer");
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::not_joined);
}

TEST_CASE("mesh: a signal to a member that is not a neighbour is refused with not_linked", "[mesh]") {
  world w;
  for (nv::peer_id id = 1; id <= 4; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
  w.join_seed(1);
  w.join_empty(2);
  w.join_empty(3);
  w.join_empty(4, 64, K2);
  // Both empty peers got the seed, which is useful to them; not each other.
  REQUIRE(w.neighbors(2) == std::set<nv::peer_id>{1});
  REQUIRE(w.neighbors(3) == std::set<nv::peer_id>{1});

  // Either direction of a link will do: the initiator's side and the other one.
  for (auto [from, to] : {std::pair<nv::peer_id, nv::peer_id>{1, 2}, {2, 1}, {1, 3}, {3, 1}}) {
    send_signal(w, from, K1, to, R"({"type":"offer"})", "offer");
    CHECK(relayed(w, to));
  }
  CHECK(w.m.counters().signals_relayed[0] == 4);

  const auto errors_before = w.m.counters().errors[static_cast<std::size_t>(nv::error_code::not_linked)];
  for (int i = 0; i < 5; ++i) {
    send_signal(w, 2, K1, 3, std::string(16000, 'x'));
    CHECK(refused(w, 2, nv::error_code::not_linked));
    send_signal(w, 3, K1, 2);
    CHECK(refused(w, 3, nv::error_code::not_linked));
  }
  CHECK(w.m.counters().signal_failures_not_linked == 10);
  CHECK(w.m.counters().errors[static_cast<std::size_t>(nv::error_code::not_linked)] == errors_before + 10);
  CHECK(w.m.counters().signals_relayed[0] == 4);
  const auto& e = std::get<nv::error>(w.out[0].message);
  CHECK(e.swarm == K1);
  CHECK(e.message.find(nv::format_peer_id(2)) != std::string::npos);

  // The other checks come first: a stranger is not found, a non-member not joined.
  send_signal(w, 2, K1, 4);
  CHECK(refused(w, 2, nv::error_code::peer_not_found));
  send_signal(w, 4, K1, 2);
  CHECK(refused(w, 4, nv::error_code::not_joined));
  CHECK(w.m.counters().signal_failures_not_linked == 10);
}

TEST_CASE("mesh: a removed link may carry signals for unlinked_grace, both ways", "[mesh]") {
  mesh_config config;
  config.unlinked_grace_ms = 30'000;
  world w(config);
  for (nv::peer_id id = 1; id <= 3; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
  w.join_seed(1);
  w.join_seed(2);
  w.join_empty(3);
  REQUIRE(w.linked(3, 1));
  REQUIRE(w.linked(3, 2));

  // 3 reports 1: the link goes (both told remove), but what was on its way still arrives.
  nv::report r{K1, 0, 0, 0};
  r.bad_peers = {1};
  w.report(3, r);
  REQUIRE_FALSE(w.linked(3, 1));
  const auto removed_at = w.now;
  for (auto at : {removed_at, removed_at + 29'999}) {
    w.now = at;
    send_signal(w, 3, K1, 1, R"({"type":"candidate"})", "candidate");
    CHECK(relayed(w, 1));
    send_signal(w, 1, K1, 3);
    CHECK(relayed(w, 3));
  }
  w.now = removed_at + 30'000;
  send_signal(w, 3, K1, 1);
  CHECK(refused(w, 3, nv::error_code::not_linked));
  send_signal(w, 1, K1, 3);
  CHECK(refused(w, 1, nv::error_code::not_linked));
  // The live link is unaffected by time.
  w.now += 1'000'000;
  send_signal(w, 3, K1, 2);
  CHECK(relayed(w, 2));
}

TEST_CASE("mesh: a re-join keeps the old links signalable for the grace", "[mesh]") {
  world w;
  for (nv::peer_id id = 1; id <= 2; ++id) w.add_peer(id, 1, far_away(static_cast<std::uint32_t>(id)));
  w.join_seed(1);
  w.join_empty(2);
  REQUIRE(w.linked(2, 1));
  // 2 re-joins as a seed: its link to 1 is dropped (two seeds are never linked).
  w.join_seed(2);
  REQUIRE_FALSE(w.linked(2, 1));
  send_signal(w, 2, K1, 1);
  CHECK(relayed(w, 1));
  send_signal(w, 1, K1, 2);
  CHECK(relayed(w, 2));
  w.now += mesh_config{}.unlinked_grace_ms;
  send_signal(w, 2, K1, 1);
  CHECK(refused(w, 2, nv::error_code::not_linked));
}

TEST_CASE("mesh: with no grace, a removed link carries nothing more", "[mesh]") {
  mesh_config config;
  config.unlinked_grace_ms = 0;
  world w(config);
  for (nv::peer_id id = 1; id <= 3; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
  w.join_seed(1);
  w.join_seed(2);
  w.join_empty(3);
  nv::report r{K1, 0, 0, 0};
  r.bad_peers = {1};
  w.report(3, r);
  send_signal(w, 3, K1, 1);
  CHECK(refused(w, 3, nv::error_code::not_linked));
  send_signal(w, 3, K1, 2);
  CHECK(relayed(w, 2));
}

TEST_CASE("mesh: reports are summed per swarm and in total", "[mesh]") {
  world w;
  for (nv::peer_id id = 1; id <= 3; ++id) w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
  w.join_empty(1, 64, K1);
  w.join_empty(2, 64, K1);
  w.join_empty(3, 64, K2);
  std::uint64_t http[2] = {0, 0}, p2p[2] = {0, 0}, up = 0;
  std::mt19937_64 rng(8);
  for (int i = 0; i < 300; ++i) {
    const nv::peer_id id = 1 + static_cast<nv::peer_id>(rng() % 3);
    const auto& key = id == 3 ? K2 : K1;
    nv::report r{key, rng() % 1000000, rng() % 1000000, rng() % 1000000};
    w.out.clear();
    w.m.on_report(w.peers.at(id), r, w.now, w.out);
    CHECK(w.out.empty());
    http[id == 3] += r.http_bytes;
    p2p[id == 3] += r.p2p_bytes;
    up += r.uploaded_bytes;
  }
  // A report for a swarm the peer is not in is refused and not counted.
  w.out.clear();
  w.m.on_report(w.peers.at(3), nv::report{K1, 5, 5, 5}, w.now, w.out);
  REQUIRE(w.out.size() == 1);
  CHECK(w.out[0].to == world::conn_of(3));
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::not_joined);
  CHECK(std::get<nv::error>(w.out[0].message).ref == "report");

  const auto& c = w.m.counters();
  CHECK(c.http_bytes == http[0] + http[1]);
  CHECK(c.p2p_bytes == p2p[0] + p2p[1]);
  CHECK(c.uploaded_bytes == up);
  auto top = w.m.top_swarms(10);
  REQUIRE(top.size() == 2);
  CHECK(top[0].key == K1);  // most peers first
  CHECK(top[0].peers == 2);
  CHECK(top[0].http_bytes == http[0]);
  CHECK(top[0].p2p_bytes == p2p[0]);
  CHECK(top[1].key == K2);
  CHECK(top[1].http_bytes == http[1]);
  CHECK(top[1].p2p_bytes == p2p[1]);
  CHECK(w.m.top_swarms(1).size() == 1);
}

// ------------------------------------------------------------------ errors leave state untouched

TEST_CASE("mesh: join errors leave the state untouched", "[mesh]") {
  const nv::peer_id id = GENERATE(as<nv::peer_id>{}, 3, 7);  // a member re-joining, and a newcomer
  INFO("peer " << id);
  mesh_config c;
  c.max_blocks = 100;
  world w(c, 3);
  std::mt19937_64 rng(3);
  for (nv::peer_id p = 1; p <= 8; ++p) {
    w.add_peer(p, 3, far_away(static_cast<std::uint32_t>(p)));
    if (p <= 6) w.join(p, random_bits(64, rng, 0.5));
  }
  w.drain();
  const auto before = w.snapshot();
  const auto plans = w.m.counters().plans;
  auto join_fails = [&](nv::join j, nv::error_code code) {
    w.join_raw(id, std::move(j));
    REQUIRE(w.out.size() == 1);
    CHECK(w.out[0].to == world::conn_of(id));
    REQUIRE(std::holds_alternative<nv::error>(w.out[0].message));
    CHECK(std::get<nv::error>(w.out[0].message).code == code);
    CHECK(std::get<nv::error>(w.out[0].message).ref == "join");
    CHECK(w.snapshot() == before);
    CHECK(w.m.counters().plans == plans);
  };
  auto good = [&]() {
    nv::join j;
    j.swarm = K1;
    j.size = 64 * block_size - 7;
    j.block_size = block_size;
    return j;
  };
  {
    SECTION("swarm_mismatch: other size, even with the same block count") {
      auto j = good();
      j.size -= 1;
      join_fails(std::move(j), nv::error_code::swarm_mismatch);
    }
    SECTION("swarm_mismatch: other block_size") {
      auto j = good();
      j.block_size = 2048;
      j.size = 32 * 2048;
      join_fails(std::move(j), nv::error_code::swarm_mismatch);
    }
    SECTION("bad_bitfield: too short, too long, padding bits set") {
      for (std::string bytes : {std::string(7, '\0'), std::string(9, '\0'), std::string("")}) {
        auto j = good();
        j.have = nv::join::holding::some;
        j.bitfield_bytes = bytes;
        join_fails(std::move(j), nv::error_code::bad_bitfield);
      }
      auto j = good();
      j.size = 60 * block_size;  // other swarm, 60 blocks: 4 unused bits in the last byte
      j.swarm = K2;
      j.have = nv::join::holding::some;
      j.bitfield_bytes = std::string(7, '\0') + std::string(1, '\x08');
      join_fails(std::move(j), nv::error_code::bad_bitfield);
    }
    SECTION("too_many_blocks") {
      auto j = good();
      j.swarm = K2;
      j.size = 100 * block_size + 1;
      join_fails(std::move(j), nv::error_code::too_many_blocks);
      // Exactly the limit is fine.
      j = good();
      j.swarm = K2;
      j.size = 100 * block_size;
      w.pending_for_test(all_of(100));
      j.have = nv::join::holding::all;
      w.join_raw(id, std::move(j));
      CHECK_FALSE(w.has_error());
      CHECK(w.m.availability(K2).size() == 100);
    }
  }
  SECTION("too_many_blocks under the default limit of 16384") {
    world d;
    d.add_peer(1, 8, far_away(1));
    nv::join j;
    j.swarm = K1;
    j.block_size = 1024;
    j.size = 16385ull * 1024;
    d.join_raw(1, std::move(j));
    REQUIRE(d.errors_to(1).size() == 1);
    CHECK(d.errors_to(1)[0].code == nv::error_code::too_many_blocks);
    CHECK(d.m.totals().swarms == 0);
    nv::join k;
    k.swarm = K1;
    k.block_size = 1024;
    k.size = 16384ull * 1024;
    d.pending_for_test(none_of(16384));
    d.join_raw(1, std::move(k));
    CHECK_FALSE(d.has_error());
  }
}

TEST_CASE("mesh: have errors leave the state untouched", "[mesh]") {
  world w({}, 6);
  for (nv::peer_id id = 1; id <= 5; ++id) {
    w.add_peer(id, 8, far_away(static_cast<std::uint32_t>(id)));
    if (id <= 4) w.join_empty(id, 64);
  }
  w.drain();
  const auto before = w.snapshot();
  const auto plans = w.m.counters().plans;

  // One index out of range spoils the whole message, even the valid indices before it.
  for (std::vector<std::uint32_t> blocks : {std::vector<std::uint32_t>{1, 2, 64}, {64}, {4294967295u}, {0, 63, 1000}}) {
    w.have_blocks(1, blocks);
    REQUIRE(w.out.size() == 1);
    CHECK(w.out[0].to == world::conn_of(1));
    const auto& e = std::get<nv::error>(w.out[0].message);
    CHECK(e.code == nv::error_code::block_out_of_range);
    CHECK(e.ref == "have");
    CHECK(w.snapshot() == before);
  }
  // From a non-member: not_joined.
  w.have_blocks(5, {1});
  REQUIRE(w.out.size() == 1);
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::not_joined);
  w.have_blocks(1, {1}, K2);
  REQUIRE(w.out.size() == 1);
  CHECK(std::get<nv::error>(w.out[0].message).code == nv::error_code::not_joined);
  CHECK(w.snapshot() == before);
  w.replan();
  CHECK(w.out.empty());
  CHECK(w.m.counters().plans == plans);
}

TEST_CASE("mesh: a re-join replaces the bitfield and tells everyone the truth", "[mesh]") {
  world w({}, 12);
  for (nv::peer_id id = 1; id <= 6; ++id) {
    w.add_peer(id, 3, far_away(static_cast<std::uint32_t>(id)));
    w.join(id, range_of(64, 0, static_cast<std::uint32_t>(id * 10)));
  }
  w.join_seed(3);
  CHECK(w.m.availability(K1)[63] == 1);
  CHECK(w.m.totals().seeds == 1);
  CHECK(w.m.totals().leechers == 5);
  w.join_empty(3);
  CHECK(w.m.availability(K1)[63] == 0);
  CHECK(w.m.totals().seeds == 0);
  CHECK(w.m.totals().leechers == 6);
  // The joined message counts the others, not the re-joiner twice.
  for (const auto& o : w.out)
    if (auto* j = std::get_if<nv::joined>(&o.message)) CHECK(j->peers == 5);
}

// ------------------------------------------------------------------ bounded cost

TEST_CASE("mesh: a join in a 100k-peer swarm does not scan the swarm", "[mesh][scale]") {
  // Timing, compared within one run: a join into a swarm of 100000 must cost about what a join
  // into a swarm of 1000 costs (both are sampled), not 100 times as much (a scan).
  auto fill = [](mesh& m, std::size_t n, std::mt19937_64& rng) {
    std::vector<mesh_outgoing> out;
    for (std::size_t i = 0; i < n; ++i) {
      member_info who{i, i + 1, 8, location{static_cast<std::uint32_t>(rng() % 50), rng() % 5000,
                                            static_cast<std::uint32_t>(rng() % 300), static_cast<std::uint16_t>(rng() % 40)}};
      nv::join j;
      j.swarm = K1;
      j.size = 256 * 1024;
      j.block_size = 1024;
      const auto r = rng() % 10;
      if (r == 0) j.have = nv::join::holding::all;
      else if (r < 7) {
        j.have = nv::join::holding::some;
        j.bitfield_bytes.resize(32);
        for (auto& c : j.bitfield_bytes) c = static_cast<char>(rng() & rng());
      }
      m.on_join(who, std::move(j), 0, out);
      out.clear();
    }
  };
  std::mt19937_64 rng(77);
  mesh small({}, 1), big({}, 2);
  fill(small, 1000, rng);
  fill(big, 100000, rng);
  std::vector<double> t_small, t_big;
  std::vector<mesh_outgoing> out;
  for (int i = 0; i < 1500; ++i) {
    for (auto* m : {&small, &big}) {
      const nv::peer_id id = 10'000'000 + static_cast<nv::peer_id>(i);
      member_info who{id, id, 8, location{static_cast<std::uint32_t>(rng() % 50), rng() % 5000, 0, 0}};
      nv::join j;
      j.swarm = K1;
      j.size = 256 * 1024;
      j.block_size = 1024;
      const auto start = std::chrono::steady_clock::now();
      m->on_join(who, std::move(j), 0, out);
      const auto stop = std::chrono::steady_clock::now();
      (m == &small ? t_small : t_big).push_back(std::chrono::duration<double, std::micro>(stop - start).count());
      // The joiner hears about neighbours, and a bounded number of peers hear about it.
      CHECK(out.size() <= 2 + 8 + 4);
      out.clear();
      m->on_peer_gone(id, 0, out);
      out.clear();
    }
  }
  auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  const double ms = median(t_small), mb = median(t_big);
  INFO("median join: 1k swarm " << ms << " us, 100k swarm " << mb << " us");
  CHECK(mb < 20 * ms + 20);
  CHECK(small.check_invariants() == "");
  CHECK(big.check_invariants() == "");
}
