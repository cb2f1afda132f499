#pragma once
// The native-protocol domain for one shard: swarms keyed by normalized resource URL, the block
// bitfield of every member with per-block availability counts, the mesh of neighbours (who
// should open a WebRTC connection to whom) and the signaling relay between members.
//
// Mesh rules (protocol/README.md has the user-facing version):
// - symmetric links, exactly one initiator per link (the peer being planned), degree caps;
// - candidates scored by usefulness = blocks q has that p lacks + give_weight x blocks p has
//   that q lacks, grouped in log2 bands so that "comparably useful" candidates are ordered by
//   locality tier (site, subnet, asn, country, remote);
// - a needy peer with no useful neighbour may take a link from a full holder away from a peer
//   that keeps several useful neighbours (fair share of scarce holders); and within a band a
//   candidate that p would give blocks to and that has no useful neighbour yet comes first;
// - a member with no useful candidate gets up to two links anyway, unless it is a seed;
// - bounded work: at most max_candidates candidates, sampled from the peer's locality buckets,
//   from holders and at random; a swarm below exhaustive_below members is scanned whole;
// - have updates only mark a member dirty; replan() re-plans dirty members later, once.
// Signals are relayed only between linked members, and for unlinked_grace after a link is
// removed (the SDP and ICE of a link being torn down may still be on their way).
// Memory: a swarm is created, and a block map grows (a new member's bitfield, wider counts),
// only with room taken from the swarm_budget shared by every shard; the room comes back as
// members and swarms go. A join that finds no room is refused with server_full.
// Time and randomness are parameters; no sockets, no logging. Not thread-safe (one shard).
#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/bitfield.hpp"
#include "protocol/keyed_hash.hpp"
#include "protocol/native.hpp"
#include "server/swarm/address.hpp"
#include "server/swarm/block_counts.hpp"
#include "server/swarm/swarm_budget.hpp"

namespace swarmcoord::swarm {

namespace nv = protocol::native;
using mesh_connection_id = std::uint64_t;
using mesh_time_ms = std::int64_t;

// Where a peer is, as the network layer determined it from its address.
struct location {
  std::uint32_t site = 0;     // operator site id; 0 = none
  std::uint64_t subnet = 0;   // subnet_key(): IPv4 /24, IPv6 /48
  std::uint32_t asn = 0;      // 0 = unknown
  std::uint16_t country = 0;  // two ASCII letters packed; 0 = unknown
};
nv::locality locality_between(const location& a, const location& b);

struct mesh_config {
  double give_weight = 0.25;
  std::size_t max_candidates = 64;
  std::size_t exhaustive_below = 128;
  std::uint32_t max_blocks = 16384;
  std::size_t max_takebacks_per_plan = 4;
  std::size_t replan_per_call = 1024;  // dirty members re-planned per replan() call at most
  mesh_time_ms unlinked_grace_ms = 30'000;  // signal.unlinked_grace_s
};

struct member_info {
  mesh_connection_id conn = 0;
  nv::peer_id id = 0;
  std::uint32_t max_neighbors = 8;
  location where;
};

inline constexpr std::size_t signal_kind_count = 4;
inline constexpr std::string_view signal_kind_names[signal_kind_count] = {"offer", "answer", "candidate", "other"};
std::size_t signal_kind_index(std::string_view kind);

struct mesh_counters {
  // Requests refused by the swarm's rules, by code (the session counts the errors of decoding
  // and of its own limits).
  std::array<std::uint64_t, nv::error_code_count> errors{};
  std::uint64_t plans = 0;
  std::array<std::uint64_t, nv::locality_count> neighbors_assigned{};
  std::uint64_t links_taken_back = 0;
  std::array<std::uint64_t, signal_kind_count> signals_relayed{};
  std::uint64_t signal_failures_not_joined = 0;
  std::uint64_t signal_failures_peer_not_found = 0;
  std::uint64_t signal_failures_not_linked = 0;
  std::uint64_t http_bytes = 0;
  std::uint64_t p2p_bytes = 0;
  std::uint64_t uploaded_bytes = 0;
  std::uint64_t bad_peer_reports = 0;
  // Joins refused for want of room in the swarm_budget (also counted in errors[server_full]).
  std::uint64_t limited_swarms = 0;  // limits.max_swarms
  std::uint64_t limited_memory = 0;  // limits.max_swarm_memory_mb
};

struct mesh_outgoing {
  mesh_connection_id to;
  nv::server_message message;
};

// What a join came to. `refused`: the joiner is not a member of the swarm afterwards (it was
// not one before, and the join failed); a refused re-join of a member leaves it a member with
// its old state, which counts as `joined`. The connection's home counts the swarms it is in
// (limits.max_swarms_per_connection), so a refusal gives the slot back.
enum class join_outcome : std::uint8_t { joined, refused };

struct mesh_swarm_summary {
  std::string key;
  std::uint32_t peers = 0;
  std::uint32_t seeds = 0;
  std::uint32_t blocks = 0;
  std::uint64_t http_bytes = 0;
  std::uint64_t p2p_bytes = 0;
};

struct mesh_totals {
  std::size_t swarms = 0;
  std::size_t seeds = 0;
  std::size_t leechers = 0;
  std::size_t links = 0;
  std::size_t block_map_bytes = 0;  // taken from the swarm_budget: counts and bitfields
};

// `now` (a monotonic clock) times the removal of links, from which a pair may still signal for
// unlinked_grace; calls that can remove links take it.
class mesh {
 public:
  // budget: shared with the other shards; none means no cap.
  explicit mesh(mesh_config config, std::uint64_t seed = 0x5eed, std::shared_ptr<swarm_budget> budget = nullptr);
  ~mesh();  // gives back the room its swarms hold
  // Movable (the moved-from one holds nothing and gives nothing back), not copyable: two
  // copies would give the same room back twice.
  mesh(mesh&&) = default;
  mesh& operator=(mesh&&) = delete;

  join_outcome on_join(const member_info& who, nv::join&& j, mesh_time_ms now, std::vector<mesh_outgoing>& out);
  void on_have(const member_info& who, nv::have&& h, std::vector<mesh_outgoing>& out);
  void on_leave(const member_info& who, const nv::leave& l, mesh_time_ms now, std::vector<mesh_outgoing>& out);
  // Relayed when the target is linked to the sender, or was within unlinked_grace; else
  // not_joined, peer_not_found or not_linked.
  void on_signal(const member_info& who, nv::signal&& s, mesh_time_ms now, std::vector<mesh_outgoing>& out);
  void on_report(const member_info& who, const nv::report& r, mesh_time_ms now, std::vector<mesh_outgoing>& out);
  // The peer's connection is gone: it leaves every swarm of this shard.
  void on_peer_gone(nv::peer_id id, mesh_time_ms now, std::vector<mesh_outgoing>& out);
  // Re-plans members whose blocks changed since the last call.
  void replan(mesh_time_ms now, std::vector<mesh_outgoing>& out);

  mesh_totals totals() const;
  std::vector<mesh_swarm_summary> top_swarms(std::size_t n) const;
  const mesh_counters& counters() const { return counters_; }
  // For tests: neighbours of a member as (peer id, initiator) pairs; empty if not a member.
  std::vector<std::pair<nv::peer_id, bool>> neighbors_of(const std::string& swarm, nv::peer_id id) const;
  std::vector<std::uint32_t> availability(const std::string& swarm) const;
  // For tests: an empty string when every invariant holds, else what is broken.
  std::string check_invariants() const;

 private:
  enum set_kind : std::uint8_t { all_set, holder_set, site_set, subnet_set, asn_set, country_set, set_kinds };
  struct link {
    std::uint32_t slot;
    bool initiator;
  };
  // A link removed lately: the pair may still signal until `until` (see on_signal).
  struct unlinked {
    nv::peer_id peer;
    mesh_time_ms until;
  };
  static constexpr std::size_t max_unlinked = 16;
  struct member {
    bool alive = false;
    member_info info;
    protocol::bitfield have;
    std::vector<link> links;
    std::array<std::uint32_t, set_kinds> pos{};
    std::uint32_t epoch = 0;  // candidate de-duplication mark
    bool dirty = false;
    // Peers this member reported for blocks that failed its manifest: never linked to it
    // again (either way round). Bounded; the oldest is forgotten first.
    std::vector<nv::peer_id> distrusted;
    // Links removed within unlinked_grace, both sides recorded; expired ones pruned when
    // another is added. Bounded; the oldest is forgotten first (its late signals are refused).
    std::vector<unlinked> recently_unlinked;
  };
  using bucket_map = std::unordered_map<std::uint64_t, std::vector<std::uint32_t>>;
  struct swarm_state {
    std::string key;
    std::uint64_t size = 0;
    std::uint32_t block_size = 0;
    std::uint32_t blocks = 0;
    std::vector<member> slots;
    std::vector<std::uint32_t> free_slots;
    std::unordered_map<nv::peer_id, std::uint32_t> by_id;
    std::vector<std::uint32_t> all, holders, dirty;
    std::array<bucket_map, set_kinds> buckets;  // used for site..country
    block_counts availability;
    std::size_t charged = 0;  // block-map bytes taken from the budget: counts + members' bitfields
    std::uint32_t seeds = 0;
    std::uint32_t epoch = 0;
    std::uint64_t http_bytes = 0, p2p_bytes = 0, uploaded_bytes = 0;
  };
  // Neighbour changes of one operation, sent as one message per affected member at the end.
  struct change_set {
    std::unordered_map<std::uint32_t, nv::neighbors> by_slot;
  };

  static std::uint64_t bucket_key(set_kind k, const location& l);
  std::vector<std::uint32_t>* set_for(swarm_state& s, set_kind k, const member& m);
  void set_insert(swarm_state& s, set_kind k, std::uint32_t slot);
  void set_erase(swarm_state& s, set_kind k, std::uint32_t slot);

  std::uint32_t add_member(swarm_state& s, const member_info& who, protocol::bitfield&& have);
  void remove_member(swarm_state& s, std::uint32_t slot, change_set& changes);
  void connect(swarm_state& s, std::uint32_t initiator, std::uint32_t other, change_set& changes);
  void disconnect(swarm_state& s, std::uint32_t a, std::uint32_t b, change_set& changes);
  bool linked(const swarm_state& s, std::uint32_t a, std::uint32_t b) const;
  void remember_unlinked(member& m, nv::peer_id other);
  static bool unlinked_lately(const member& m, nv::peer_id other, mesh_time_ms now);
  static bool distrust(const member& a, const member& b);
  static constexpr std::size_t max_distrusted = 16;
  double usefulness(const member& p, const member& q) const;
  std::size_t useful_neighbors(const swarm_state& s, std::uint32_t slot) const;
  void plan(swarm_state& s, std::uint32_t slot, change_set& changes);
  bool take_back(swarm_state& s, std::uint32_t needy, std::uint32_t holder, change_set& changes);
  void gather_candidates(swarm_state& s, std::uint32_t slot, std::vector<std::uint32_t>& out);
  void flush(swarm_state& s, change_set& changes, std::vector<mesh_outgoing>& out);
  // Answers the request of connection `to` with an error, counted by code.
  void refuse(std::vector<mesh_outgoing>& out, mesh_connection_id to, nv::error&& e);
  void forget_swarm_of(nv::peer_id id, const std::string& key);
  // Room: what a swarm's block map takes (counts and every member's bitfield); what the
  // members that left no longer need goes back to the budget, and an empty swarm all of it.
  static std::size_t bitfield_bytes(std::uint32_t blocks) { return (std::size_t{blocks} + 63) / 64 * 8; }
  static std::size_t block_map_bytes(const swarm_state& s) {
    return s.availability.bytes() + s.all.size() * bitfield_bytes(s.blocks);
  }
  void give_back_unused(swarm_state& s);
  void drop_if_empty(const std::string& key);
  swarm_state* find_member(const std::string& key, nv::peer_id id, std::uint32_t& slot);

  mesh_config config_;
  std::mt19937_64 rng_;
  std::shared_ptr<swarm_budget> budget_;
  std::unordered_map<std::string, swarm_state, protocol::keyed_string_hash, std::equal_to<>> swarms_;
  std::unordered_map<nv::peer_id, std::vector<std::string>> peer_swarms_;
  mesh_counters counters_;
  std::vector<std::uint32_t> candidates_;  // scratch
  std::string resume_;  // where replan() goes on after running out of budget
  mesh_time_ms now_ = 0;  // the time of the call in progress, for links it removes
};

}  // namespace swarmcoord::swarm
