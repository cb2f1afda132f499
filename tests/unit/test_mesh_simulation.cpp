// Randomized, seeded simulation of the native mesh: joins (valid and not), have, leave,
// disconnects, re-plans, signals and reports in several swarms. After every step: the mesh
// invariants hold, no peer is over its max_neighbors, availability matches the members'
// blocks, and the neighbors messages, applied to a per-client model (remove before add),
// reproduce exactly neighbors_of() for every member: the messages tell clients the truth.
// Signals are relayed exactly between the members the clients were told are linked, or were
// told lately (within unlinked_grace, as the mesh remembers it: a bounded list per member).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "protocol/native.hpp"
#include "server/swarm/mesh.hpp"

namespace {

namespace nv = swarmcoord::protocol::native;
using swarmcoord::swarm::location;
using swarmcoord::swarm::mesh;
using swarmcoord::swarm::mesh_config;
using swarmcoord::swarm::mesh_connection_id;
using swarmcoord::swarm::mesh_outgoing;
using swarmcoord::swarm::member_info;
using swarmcoord::swarm::mesh_time_ms;

struct swarm_spec {
  std::string key;
  std::uint32_t blocks;
  std::uint32_t block_size;
  std::uint64_t size() const { return std::uint64_t{blocks - 1} * block_size + block_size / 3; }
};

const swarm_spec swarms[] = {
    {"https://cdn.example/small", 20, 1024},
    {"https://cdn.example/medium", 64, 2048},
    {"https://cdn.example/large", 130, 4096},
};

nv::locality expected_locality(const location& a, const location& b) {
  if (a.site != 0 && a.site == b.site) return nv::locality::site;
  if (a.subnet == b.subnet) return nv::locality::subnet;
  if (a.asn != 0 && a.asn == b.asn) return nv::locality::asn;
  if (a.country != 0 && a.country == b.country) return nv::locality::country;
  return nv::locality::remote;
}

std::string wire(const std::vector<bool>& b) {
  std::string out((b.size() + 7) / 8, '\0');
  for (std::size_t i = 0; i < b.size(); ++i)
    if (b[i]) out[i / 8] = static_cast<char>(static_cast<unsigned char>(out[i / 8]) | (0x80u >> (i % 8)));
  return out;
}

class simulation {
 public:
  simulation(mesh_config config, std::uint64_t seed) : m_(config, seed), config_(config), rng_(seed * 7919 + 1) {}

  void run(int steps) {
    for (int step = 0; step < steps; ++step) {
      INFO("step " << step);
      one_step();
      verify();
    }
    for (int i = 0; i < 20; ++i) {
      out_.clear();
      m_.replan(now_, out_);
      apply();
      verify();
      if (out_.empty()) break;
    }
  }

  std::map<std::string, int> stats;
  const mesh& the_mesh() const { return m_; }

 private:
  struct peer {
    member_info info;
  };
  using key = std::pair<std::size_t, nv::peer_id>;  // swarm index, peer

  // What a client was told lately about removed links, kept as the mesh keeps it: in the order
  // of removal, expired ones dropped on each addition, at most max_unlinked (the oldest goes).
  static constexpr std::size_t max_unlinked = 16;
  using unlinked_list = std::vector<std::pair<nv::peer_id, mesh_time_ms>>;

  mesh m_;
  mesh_config config_;
  mesh_time_ms now_ = 1'000'000;
  std::map<key, unlinked_list> unlinked_;
  std::mt19937_64 rng_;
  std::map<nv::peer_id, peer> live_;
  std::map<mesh_connection_id, nv::peer_id> conns_;
  std::set<mesh_connection_id> dead_conns_;
  nv::peer_id next_id_ = 1;
  std::map<key, std::map<nv::peer_id, bool>> view_;  // what each member was told
  std::map<key, std::vector<bool>> have_;             // what each member holds
  std::vector<mesh_outgoing> out_;

  std::size_t pick(std::size_t n) { return static_cast<std::size_t>(rng_() % n); }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  nv::peer_id new_peer() {
    const nv::peer_id id = next_id_++ * 0x9e3779b97f4a7c15ull;  // ids are not small or ordered
    peer p;
    p.info.id = id;
    p.info.conn = 1000 + next_id_;
    p.info.max_neighbors = static_cast<std::uint32_t>(1 + pick(6));
    p.info.where = location{static_cast<std::uint32_t>(pick(3)), 100 + pick(6), static_cast<std::uint32_t>(pick(4)),
                            static_cast<std::uint16_t>(pick(3))};
    live_[id] = p;
    conns_[p.info.conn] = id;
    return id;
  }

  nv::peer_id any_peer() {
    if (live_.size() < 20 || (live_.size() < 70 && chance(0.2))) return new_peer();
    auto it = live_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(pick(live_.size())));
    return it->first;
  }

  std::vector<key> members() const {
    std::vector<key> r;
    for (const auto& [k, v] : have_) r.push_back(k);
    return r;
  }

  bool has_error(nv::error_code code) const {
    return std::any_of(out_.begin(), out_.end(), [&](const mesh_outgoing& o) {
      auto* e = std::get_if<nv::error>(&o.message);
      return e && e->code == code;
    });
  }
  bool any_error() const {
    return std::any_of(out_.begin(), out_.end(), [](const mesh_outgoing& o) { return std::holds_alternative<nv::error>(o.message); });
  }

  void remember_unlinked(const key& k, nv::peer_id other) {
    if (config_.unlinked_grace_ms <= 0) return;
    auto& list = unlinked_[k];
    list.erase(list.begin(), std::find_if(list.begin(), list.end(), [&](const auto& u) { return u.second > now_; }));
    if (list.size() >= max_unlinked) list.erase(list.begin());
    list.emplace_back(other, now_ + config_.unlinked_grace_ms);
  }
  bool unlinked_lately(const key& k, nv::peer_id other) const {
    auto it = unlinked_.find(k);
    return it != unlinked_.end() && std::any_of(it->second.begin(), it->second.end(), [&](const auto& u) {
             return u.first == other && u.second > now_;
           });
  }

  void one_step() {
    out_.clear();
    now_ += static_cast<mesh_time_ms>(pick(2500));
    const auto r = pick(100);
    if (r < 30) do_join();
    else if (r < 55) do_have();
    else if (r < 65) do_leave();
    else if (r < 70) do_gone();
    else if (r < 88) do_replan();
    else if (r < 96) do_signal();
    else do_report();
    apply();
  }

  void do_join() {
    const auto id = any_peer();
    const std::size_t si = pick(std::size(swarms));
    const auto& sw = swarms[si];
    nv::join j;
    j.swarm = sw.key;
    j.size = sw.size();
    j.block_size = sw.block_size;
    std::vector<bool> bits(sw.blocks);
    const auto mode = pick(100);
    enum { ok, mismatch, bad_length, bad_padding } expect = ok;
    if (mode < 15) {
      j.have = nv::join::holding::all;
      bits.assign(sw.blocks, true);
    } else if (mode < 45) {
      j.have = nv::join::holding::none;
    } else if (mode < 90) {
      j.have = nv::join::holding::some;
      const double density = static_cast<double>(pick(101)) / 100.0;
      for (std::uint32_t i = 0; i < sw.blocks; ++i) bits[i] = chance(density);
      j.bitfield_bytes = wire(bits);
    } else if (mode < 94) {
      j.size += sw.block_size;  // another resource under the same URL
      expect = mismatch;
    } else if (mode < 97) {
      j.have = nv::join::holding::some;
      j.bitfield_bytes = std::string(sw.blocks / 8 + 2, '\0');
      expect = bad_length;
    } else {
      j.have = nv::join::holding::some;
      j.bitfield_bytes = std::string((sw.blocks + 7) / 8, '\0');
      if (sw.blocks % 8 == 0) {
        j.bitfield_bytes += '\0';
        expect = bad_length;
      } else {
        j.bitfield_bytes.back() = 1;  // the very last padding bit
        expect = bad_padding;
      }
    }
    const bool swarm_exists = std::any_of(have_.begin(), have_.end(), [&](const auto& kv) { return kv.first.first == si; });
    m_.on_join(live_.at(id).info, std::move(j), now_, out_);
    switch (expect) {
      case ok:
        REQUIRE_FALSE(any_error());
        have_[{si, id}] = bits;
        ++stats["join"];
        break;
      case mismatch:
        if (swarm_exists) {
          REQUIRE(has_error(nv::error_code::swarm_mismatch));
          REQUIRE(out_.size() == 1);
          ++stats["swarm_mismatch"];
        } else {  // it founds the swarm with that size: the next regular join will mismatch
          REQUIRE_FALSE(any_error());
          // Undo by leaving again at once, so the swarm keeps its regular size.
          m_.on_leave(live_.at(id).info, nv::leave{sw.key}, now_, out_);
          REQUIRE_FALSE(any_error());
          ++stats["founded_and_left"];
          // The joiner was told joined and neighbors; it left before anyone else came.
          out_.erase(std::remove_if(out_.begin(), out_.end(), [&](const mesh_outgoing& o) { return o.to == live_.at(id).info.conn; }),
                     out_.end());
          REQUIRE(out_.empty());
        }
        break;
      case bad_length:
      case bad_padding:
        REQUIRE(has_error(nv::error_code::bad_bitfield));
        REQUIRE(out_.size() == 1);
        ++stats["bad_bitfield"];
        break;
    }
  }

  void do_have() {
    auto ms = members();
    if (ms.empty()) return;
    const auto k = ms[pick(ms.size())];
    const auto& sw = swarms[k.first];
    nv::have h;
    h.swarm = sw.key;
    const auto n = 1 + pick(5);
    for (std::size_t i = 0; i < n; ++i) h.blocks.push_back(static_cast<std::uint32_t>(pick(sw.blocks)));
    const bool out_of_range = chance(0.05);
    if (out_of_range) h.blocks.insert(h.blocks.begin() + static_cast<std::ptrdiff_t>(pick(h.blocks.size())), sw.blocks + static_cast<std::uint32_t>(pick(3)));
    const auto blocks = h.blocks;
    m_.on_have(live_.at(k.second).info, std::move(h), out_);
    if (out_of_range) {
      REQUIRE(has_error(nv::error_code::block_out_of_range));
      REQUIRE(out_.size() == 1);
      ++stats["block_out_of_range"];
      return;
    }
    REQUIRE(out_.empty());  // lazily: nothing happens before replan
    for (auto b : blocks) have_[k][b] = true;
    ++stats["have"];
  }

  void do_leave() {
    auto ms = members();
    if (ms.empty() || chance(0.1)) {  // a peer leaving a swarm it is not in
      const auto id = any_peer();
      const std::size_t si = pick(std::size(swarms));
      if (have_.count({si, id})) return;
      m_.on_leave(live_.at(id).info, nv::leave{swarms[si].key}, now_, out_);
      REQUIRE(has_error(nv::error_code::not_joined));
      REQUIRE(out_.size() == 1);
      ++stats["leave_not_joined"];
      return;
    }
    const auto k = ms[pick(ms.size())];
    m_.on_leave(live_.at(k.second).info, nv::leave{swarms[k.first].key}, now_, out_);
    REQUIRE_FALSE(any_error());
    view_.erase(k);
    have_.erase(k);
    unlinked_.erase(k);  // a member that left starts afresh if it joins again
    ++stats["leave"];
  }

  void do_gone() {
    if (live_.empty()) return;
    auto it = live_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(pick(live_.size())));
    const auto id = it->first;
    dead_conns_.insert(it->second.info.conn);
    m_.on_peer_gone(id, now_, out_);
    live_.erase(it);
    for (auto v = view_.begin(); v != view_.end();) v = v->first.second == id ? view_.erase(v) : std::next(v);
    for (auto u = unlinked_.begin(); u != unlinked_.end();) u = u->first.second == id ? unlinked_.erase(u) : std::next(u);
    for (auto h = have_.begin(); h != have_.end();) h = h->first.second == id ? have_.erase(h) : std::next(h);
    ++stats["gone"];
  }

  void do_replan() {
    m_.replan(now_, out_);
    ++stats["replan"];
  }

  void do_signal() {
    auto ms = members();
    if (ms.empty()) return;
    const auto from = ms[pick(ms.size())];
    nv::peer_id to;
    const auto& told = view_[from];
    const auto& recent = unlinked_[from];
    if (!told.empty() && chance(0.35)) to = std::next(told.begin(), static_cast<std::ptrdiff_t>(pick(told.size())))->first;
    else if (!recent.empty() && chance(0.3)) to = recent[pick(recent.size())].first;  // maybe expired
    else if (chance(0.7)) to = ms[pick(ms.size())].second;  // some in the swarm, some in another
    else to = any_peer();
    nv::signal s;
    s.swarm = swarms[from.first].key;
    s.to = to;
    s.data = {R"({"type":"candidate","n":)" + std::to_string(rng_() % 1000) + "}"};
    s.kind = "candidate";
    const auto data = s.data;
    m_.on_signal(live_.at(from.second).info, std::move(s), now_, out_);
    REQUIRE(out_.size() == 1);
    const bool linked = view_[from].count(to) > 0;
    const bool lately = unlinked_lately(from, to) || unlinked_lately({from.first, to}, from.second);
    if (have_.count({from.first, to}) && !linked && !lately) {
      REQUIRE(has_error(nv::error_code::not_linked));
      CHECK(out_[0].to == live_.at(from.second).info.conn);
      ++stats["signal_not_linked"];
    } else if (have_.count({from.first, to})) {
      REQUIRE(std::holds_alternative<nv::signal_relay>(out_[0].message));
      const auto& r = std::get<nv::signal_relay>(out_[0].message);
      CHECK(out_[0].to == live_.at(to).info.conn);
      CHECK(r.from == from.second);
      CHECK(r.swarm == swarms[from.first].key);
      CHECK(r.data == data);
      ++stats[linked ? "signal" : "signal_after_unlink"];
    } else {
      REQUIRE(has_error(nv::error_code::peer_not_found));
      CHECK(out_[0].to == live_.at(from.second).info.conn);
      ++stats["signal_peer_not_found"];
    }
  }

  void do_report() {
    auto ms = members();
    if (ms.empty()) return;
    const auto k = ms[pick(ms.size())];
    const auto before = m_.counters().http_bytes;
    nv::report r{swarms[k.first].key, 100, 0, 0};
    // Now and then a member reports another one (or a stranger) for corrupt blocks: the pair
    // is unlinked for good, which the invariant checks and the client model must agree with.
    const bool blame = pick(8) == 0;
    if (blame) r.bad_peers.push_back(ms[pick(ms.size())].second);
    m_.on_report(live_.at(k.second).info, r, now_, out_);
    if (!blame) REQUIRE(out_.empty());
    CHECK(m_.counters().http_bytes == before + 100);
  }

  // Applies this step's messages to the client model.
  void apply() {
    for (const auto& o : out_) {
      REQUIRE_FALSE(dead_conns_.count(o.to));  // nothing is sent to a connection that is gone
      REQUIRE(conns_.count(o.to));
      const auto to = conns_.at(o.to);
      if (auto* j = std::get_if<nv::joined>(&o.message)) {
        const auto si = index_of(j->swarm);
        view_.try_emplace({si, to});  // a re-join keeps the view: the old links come as remove
        CHECK(j->blocks == swarms[si].blocks);
      } else if (auto* n = std::get_if<nv::neighbors>(&o.message)) {
        const auto si = index_of(n->swarm);
        auto v = view_.find({si, to});
        REQUIRE(v != view_.end());
        for (auto r : n->remove) {
          INFO("remove of a neighbour the client was never told about");
          REQUIRE(v->second.erase(r) == 1);
          remember_unlinked({si, to}, r);
          ++stats["removes"];
        }
        for (const auto& a : n->add) {
          INFO("add of a neighbour the client already has");
          REQUIRE(v->second.count(a.id) == 0);
          v->second[a.id] = a.initiator;
          CHECK(a.where == expected_locality(live_.at(to).info.where, live_.at(a.id).info.where));
          const auto& theirs = have_.at({si, a.id});
          CHECK(a.have == static_cast<std::uint32_t>(std::count(theirs.begin(), theirs.end(), true)));
          ++stats["adds"];
        }
      }
    }
  }

  static std::size_t index_of(const std::string& key) {
    for (std::size_t i = 0; i < std::size(swarms); ++i)
      if (swarms[i].key == key) return i;
    FAIL("unknown swarm " << key);
    return 0;
  }

  // One REQUIRE per step, naming the first discrepancy found.
  void verify() {
    REQUIRE(m_.check_invariants() == "");
    REQUIRE(discrepancy() == "");
  }

  std::string discrepancy() const {
    auto who = [&](const key& k) { return nv::format_peer_id(k.second) + " in " + swarms[k.first].key; };
    if (view_.size() != have_.size()) return "members and the members told about neighbours differ";
    // Every member: told exactly its neighbours, within its cap, links symmetric.
    for (const auto& [k, told] : view_) {
      if (!have_.count(k)) return who(k) + " was told about neighbours but is no member";
      const auto actual_list = m_.neighbors_of(swarms[k.first].key, k.second);
      std::map<nv::peer_id, bool> actual(actual_list.begin(), actual_list.end());
      if (actual.size() != actual_list.size()) return who(k) + " has a duplicate neighbour";
      if (actual.size() > live_.at(k.second).info.max_neighbors) return who(k) + " is over max_neighbors";
      if (actual != told) return who(k) + ": the neighbors messages do not add up to neighbors_of()";
      for (const auto& [n, initiator] : actual) {
        if (!have_.count({k.first, n})) return who(k) + " has a neighbour that is no member";
        const auto back = m_.neighbors_of(swarms[k.first].key, n);
        const auto it = std::find_if(back.begin(), back.end(), [&](const auto& p) { return p.first == k.second; });
        if (it == back.end()) return who(k) + " has a one-sided link";
        if (it->second == initiator) return who(k) + " has a link with " + (initiator ? "two initiators" : "no initiator");
      }
    }
    // Availability: exactly the members' blocks.
    for (std::size_t si = 0; si < std::size(swarms); ++si) {
      std::vector<std::uint32_t> expect(swarms[si].blocks, 0);
      std::size_t members = 0;
      for (const auto& [k, bits] : have_)
        if (k.first == si) {
          ++members;
          for (std::uint32_t b = 0; b < swarms[si].blocks; ++b) expect[b] += bits[b];
        }
      if (m_.availability(swarms[si].key) != (members ? expect : std::vector<std::uint32_t>{}))
        return "availability in " + swarms[si].key + " differs from the members' blocks";
    }
    // Totals agree with the model.
    const auto t = m_.totals();
    std::size_t seeds = 0, links = 0;
    for (const auto& [k, bits] : have_) seeds += std::all_of(bits.begin(), bits.end(), [](bool b) { return b; });
    for (const auto& [k, told] : view_) links += told.size();
    if (t.seeds != seeds) return "seed count differs";
    if (t.seeds + t.leechers != have_.size()) return "member count differs";
    if (t.links * 2 != links) return "link count differs";
    return {};
  }
};

}  // namespace

TEST_CASE("mesh simulation: random operations keep the mesh consistent and the clients told the truth",
          "[mesh][simulation]") {
  const int variant = GENERATE(0, 1);
  const std::uint64_t seed = GENERATE(as<std::uint64_t>{}, 1, 2, 3);
  mesh_config config;
  if (variant == 1) {
    // Small limits: the sampling path (locality buckets, holders, random) instead of a scan.
    config.exhaustive_below = 6;
    config.max_candidates = 8;
    config.max_takebacks_per_plan = 2;
    config.replan_per_call = 5;
    config.unlinked_grace_ms = 5'000;  // steps are 0-2.5 s apart: records expire often
  }
  INFO("variant " << variant << " seed " << seed);
  simulation sim(config, seed);
  sim.run(4000);

  // The run covered what it is meant to cover.
  for (const char* what : {"join", "have", "leave", "gone", "replan", "signal", "signal_peer_not_found", "signal_not_linked",
                           "signal_after_unlink", "swarm_mismatch", "bad_bitfield", "block_out_of_range",
                           "leave_not_joined", "adds", "removes"}) {
    INFO(what);
    CHECK(sim.stats[what] > 0);
  }
  CHECK(sim.the_mesh().counters().links_taken_back > 0);
  CHECK(sim.the_mesh().counters().plans > 1000);
}
