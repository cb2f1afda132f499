// The native mesh domain (server/swarm/mesh*.cpp) driven by event sequences decoded from the
// input: joins (valid, mismatched, with bitfields of any shape), have, leave, connections gone,
// re-plans, signals and reports, over a few swarms and a dozen peers, with small limits so
// that sampling, take-backs and caps come into play. Requests stay within what the codec lets
// through (sizes, block sizes, counts). After every step check_invariants() must come back
// empty, nothing may be sent to a connection that is gone, and the joined and neighbors
// messages, applied to a model of each client (remove before add), must add up to exactly
// neighbors_of() for every member: the clients are told the truth.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "server/swarm/mesh.hpp"
#include "server/swarm/swarm_budget.hpp"

namespace sw = swarmcoord::swarm;
namespace nv = swarmcoord::protocol::native;

namespace {

constexpr std::size_t peer_slots = 12;
// Longer sequences reach no state that a few hundred steps over so few peers do not, and cost
// the fuzzer executions.
constexpr int max_steps = 256;
const std::string swarm_keys[] = {"https://a.example/0", "https://a.example/1", "https://a.example/2", "https://b.example/3"};
constexpr std::uint64_t sizes[] = {1, 1000, 1024, 5000, 70'000, 1 << 20, std::uint64_t{1} << 53};
constexpr std::uint32_t block_sizes[] = {1024, 4096, 65536};

class driver {
 public:
  explicit driver(FuzzedDataProvider& in)
      : in_(in), budget_(budget_from(in)), mesh_(config_from(in), in.ConsumeIntegral<std::uint64_t>(), budget_) {
    for (auto& p : peers_) p = new_peer();
  }

  void run() {
    for (int step = 0; step < max_steps && in_.remaining_bytes() > 0; ++step) {
      out_.clear();
      // Time moves on by a fuzzer-chosen step (up to a minute), so that the grace of removed
      // links (signal.unlinked_grace_s) both holds and runs out.
      now_ += in_.ConsumeIntegralInRange<sw::mesh_time_ms>(0, 60'000);
      switch (in_.ConsumeIntegralInRange(0, 11)) {
        case 0: case 1: case 2: join(); break;
        case 3: case 4: have(); break;
        case 5: leave(); break;
        case 6: gone(); break;
        case 7: case 8: mesh_.replan(now_, out_); break;
        case 9: signal(); break;
        case 10: report(); break;
        case 11: summaries(); break;
      }
      const auto broken = mesh_.check_invariants();
      FUZZ_REQUIRE_MSG(broken.empty(), broken);
      for (const auto& o : out_) FUZZ_REQUIRE_MSG(!dead_.count(o.to), "a message to a connection that is gone");
      apply_to_views();
      check_views();
    }
  }

 private:
  static sw::mesh_config config_from(FuzzedDataProvider& in) {
    sw::mesh_config c;
    c.give_weight = in.PickValueInArray({0.0, 0.25, 1.0});
    c.max_candidates = in.ConsumeIntegralInRange<std::size_t>(1, 16);
    c.exhaustive_below = in.ConsumeIntegralInRange<std::size_t>(0, 16);
    c.max_blocks = in.PickValueInArray({1u, 8u, 64u, 16384u});
    c.max_takebacks_per_plan = in.ConsumeIntegralInRange<std::size_t>(0, 4);
    c.replan_per_call = in.ConsumeIntegralInRange<std::size_t>(1, 16);
    return c;
  }

  // Small caps on swarms and block-map bytes, so that joins run into them (server_full).
  static std::shared_ptr<sw::swarm_budget> budget_from(FuzzedDataProvider& in) {
    sw::budget_limits limits;
    limits.native_swarms = in.ConsumeIntegralInRange<std::size_t>(1, 4);
    limits.block_map_bytes = in.PickValueInArray<std::size_t>({64, 4096, 1 << 20, sw::unlimited});
    return std::make_shared<sw::swarm_budget>(limits);
  }

  sw::member_info new_peer() {
    sw::member_info p;
    p.id = ++issued_ * 0x9e3779b97f4a7c15ull;  // ids are neither small nor ordered
    p.conn = issued_;
    id_of_conn_[p.conn] = p.id;
    p.max_neighbors = in_.ConsumeIntegralInRange<std::uint32_t>(1, 6);
    p.where = sw::location{in_.ConsumeIntegralInRange<std::uint32_t>(0, 2), in_.ConsumeIntegralInRange<std::uint64_t>(0, 3),
                           in_.ConsumeIntegralInRange<std::uint32_t>(0, 2), in_.ConsumeIntegralInRange<std::uint16_t>(0, 2)};
    return p;
  }

  const sw::member_info& peer() { return peers_[in_.ConsumeIntegralInRange<std::size_t>(0, peer_slots - 1)]; }
  const std::string& swarm_key() { return swarm_keys[in_.ConsumeIntegralInRange<std::size_t>(0, std::size(swarm_keys) - 1)]; }

  void join() {
    const auto& who = peer();
    nv::join j;
    j.swarm = swarm_key();
    j.size = in_.PickValueInArray(sizes);
    j.block_size = in_.PickValueInArray(block_sizes);
    const std::uint64_t blocks = (j.size + j.block_size - 1) / j.block_size;
    switch (in_.ConsumeIntegralInRange(0, 3)) {
      case 0: j.have = nv::join::holding::none; break;
      case 1: j.have = nv::join::holding::all; break;
      case 2: {  // well formed: one bit per block, padding clear
        j.have = nv::join::holding::some;
        if (blocks > 4096) break;  // too many for the limits anyway: an empty string is refused too
        j.bitfield_bytes = in_.ConsumeBytesAsString((blocks + 7) / 8);
        j.bitfield_bytes.resize((blocks + 7) / 8, '\0');
        if (blocks % 8) j.bitfield_bytes.back() = static_cast<char>(j.bitfield_bytes.back() & ~(0xFFu >> (blocks % 8)));
        break;
      }
      case 3:
        j.have = nv::join::holding::some;
        j.bitfield_bytes = in_.ConsumeRandomLengthString(16);
        break;
    }
    mesh_.on_join(who, std::move(j), now_, out_);
  }

  void leave() {
    const auto& who = peer();
    const auto& key = swarm_key();
    mesh_.on_leave(who, nv::leave{key}, now_, out_);
    left_ = {key, who.id};  // no longer told anything about that swarm once this step is applied
  }

  void have() {
    nv::have h;
    const auto& who = peer();
    h.swarm = swarm_key();
    for (int n = in_.ConsumeIntegralInRange(0, 8); n > 0; --n) h.blocks.push_back(in_.ConsumeIntegralInRange<std::uint32_t>(0, 80));
    if (in_.ConsumeIntegralInRange(0, 15) == 0) h.blocks.push_back(in_.ConsumeIntegral<std::uint32_t>());
    mesh_.on_have(who, std::move(h), out_);
  }

  void gone() {
    auto& slot = peers_[in_.ConsumeIntegralInRange<std::size_t>(0, peer_slots - 1)];
    dead_.insert(slot.conn);  // not even told of its own departure
    mesh_.on_peer_gone(slot.id, now_, out_);
    gone_ = slot.id;
    slot = new_peer();  // a new connection, with a new id: ids are never reused
  }

  nv::peer_id some_id() {
    if (in_.ConsumeBool()) return peer().id;
    return in_.ConsumeIntegral<nv::peer_id>();
  }

  void signal() {
    nv::signal s;
    const auto& who = peer();
    s.swarm = swarm_key();
    s.to = some_id();
    s.data = {R"({"type":"candidate","candidate":"c"})"};
    s.kind = "candidate";
    mesh_.on_signal(who, std::move(s), now_, out_);
    FUZZ_REQUIRE(out_.size() == 1);
  }

  void report() {
    nv::report r;
    const auto& who = peer();
    r.swarm = swarm_key();
    r.http_bytes = in_.ConsumeIntegralInRange<std::uint64_t>(0, std::uint64_t{1} << 50);
    r.p2p_bytes = in_.ConsumeIntegralInRange<std::uint64_t>(0, std::uint64_t{1} << 50);
    r.uploaded_bytes = in_.ConsumeIntegralInRange<std::uint64_t>(0, std::uint64_t{1} << 50);
    for (int n = in_.ConsumeIntegralInRange(0, static_cast<int>(nv::max_bad_peers_per_report)); n > 0; --n)
      r.bad_peers.push_back(some_id());
    mesh_.on_report(who, r, now_, out_);
  }

  void summaries() {
    const auto totals = mesh_.totals();
    std::size_t members = 0;
    for (const auto& s : mesh_.top_swarms(std::size(swarm_keys))) members += s.peers;
    FUZZ_REQUIRE(members == totals.seeds + totals.leechers);
    for (const auto& key : swarm_keys) {
      const auto& who = peer();
      const auto links = mesh_.neighbors_of(key, who.id);
      FUZZ_REQUIRE(links.size() <= who.max_neighbors);
    }
  }

  // The messages of this step, as a client keeps them: a view per (swarm, member) of its
  // neighbours and who initiates, opened by joined, changed by neighbors.
  void apply_to_views() {
    for (const auto& o : out_) {
      const auto id = id_of_conn_.at(o.to);
      if (const auto* j = std::get_if<nv::joined>(&o.message)) {
        views_.try_emplace({j->swarm, id});  // a re-join keeps the view: old links come as remove
      } else if (const auto* n = std::get_if<nv::neighbors>(&o.message)) {
        const auto v = views_.find({n->swarm, id});
        FUZZ_REQUIRE_MSG(v != views_.end(), "neighbors for a swarm the client was not told it joined");
        for (const auto r : n->remove) FUZZ_REQUIRE_MSG(v->second.erase(r) == 1, "remove of a neighbour never added");
        for (const auto& a : n->add) {
          FUZZ_REQUIRE_MSG(a.id != id, "a member told to link to itself");
          FUZZ_REQUIRE_MSG(v->second.emplace(a.id, a.initiator).second, "add of a neighbour the client has");
        }
      }
    }
    if (left_) views_.erase(*left_);
    if (gone_)
      for (auto v = views_.begin(); v != views_.end();) v = v->first.second == *gone_ ? views_.erase(v) : std::next(v);
    left_.reset();
    gone_.reset();
  }

  void check_views() const {
    std::size_t links = 0;
    for (const auto& [k, told] : views_) {
      const auto actual = mesh_.neighbors_of(k.first, k.second);
      const std::map<nv::peer_id, bool> truth(actual.begin(), actual.end());
      FUZZ_REQUIRE_MSG(truth == told, "the neighbors messages do not add up to neighbors_of() for " +
                                          nv::format_peer_id(k.second) + " in " + k.first);
      links += told.size();
    }
    const auto totals = mesh_.totals();
    FUZZ_REQUIRE_MSG(totals.seeds + totals.leechers == views_.size(), "members and views differ");
    FUZZ_REQUIRE(totals.links * 2 == links);
  }

  FuzzedDataProvider& in_;
  std::shared_ptr<sw::swarm_budget> budget_;  // shared with mesh_, as with every worker's
  sw::mesh mesh_;
  std::map<sw::mesh_connection_id, nv::peer_id> id_of_conn_;
  std::map<std::pair<std::string, nv::peer_id>, std::map<nv::peer_id, bool>> views_;
  std::optional<std::pair<std::string, nv::peer_id>> left_;
  std::optional<nv::peer_id> gone_;
  std::uint64_t issued_ = 0;
  sw::member_info peers_[peer_slots];
  std::set<sw::mesh_connection_id> dead_;
  std::vector<sw::mesh_outgoing> out_;
  sw::mesh_time_ms now_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  driver(in).run();
  return 0;
}
