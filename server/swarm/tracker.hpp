#pragma once
// The WebTorrent tracker domain for one shard: swarms keyed by info_hash, their peers, offers
// relayed and awaiting an answer, expiry. Time and randomness come in as parameters, results go
// out as (connection id, message) pairs; no sockets, no logging, no metrics library.
// A swarm is created only with room taken from the swarm_budget shared by every shard
// (tracker.max_swarms); an announce that would create one beyond it is refused with
// server_full, and its pair released. Not thread-safe: one shard is owned by one thread.
#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "protocol/webtorrent.hpp"
#include "server/swarm/address.hpp"
#include "server/swarm/ids.hpp"
#include "server/swarm/swarm_budget.hpp"

namespace swarmcoord::swarm {

using time_ms = std::int64_t;  // a monotonic clock, milliseconds
namespace wt = protocol::webtorrent;
using protocol::binary_id;
using protocol::binary_id_hash;

struct tracker_config {
  std::uint32_t interval_s = 120;
  std::size_t max_offers = 10;
  time_ms offer_ttl_ms = 120'000;
  time_ms peer_ttl_ms = 300'000;
  std::size_t max_scrape_all = 0;  // scrape of everything off
  // A peer_id stays with the open connection that announced it while that connection
  // re-announces it within interval_s plus this (tracker.reannounce_grace_s).
  time_ms reannounce_grace_ms = 90'000;
};

// Plain counters, summed across shards by whoever reports them.
struct tracker_counters {
  // Announces refused by the swarm's rules, by reason (peer_id_in_use, server_full); the
  // session counts the errors of decoding and of its own limits.
  std::array<std::uint64_t, wt::error_reason_count> errors{};
  std::uint64_t offers_relayed = 0;
  std::uint64_t offers_unrelayed = 0;  // no other peer, over the cap, or malformed
  std::uint64_t answers_relayed = 0;
  std::uint64_t answers_dropped_unknown_offer = 0;
  std::uint64_t answers_dropped_offerer_gone = 0;
  std::uint64_t peers_expired = 0;
  std::uint64_t limited_swarms = 0;  // announces refused for tracker.max_swarms
};

struct outgoing {
  connection_id to;
  wt::server_message message;
};

// An (info_hash, peer_id) pair that stopped belonging to a connection that is still open:
// another connection took it over after this one fell silent, it expired, or this
// connection's announce of it was refused (the peer_id is another's, or server_full). The
// connection's home counts the pairs it holds (tracker.max_peers_per_connection covers all
// shards), so it has to hear. Pairs a connection stops itself, or that go with it when it
// closes, are not reported.
// `ticket` is the one the connection gave its latest announce of the pair (on_announce): a
// release its home receives after a newer announce of the pair is stale, and ignored there.
struct released_peer {
  connection_id conn;
  binary_id info_hash;
  binary_id peer_id;
  std::uint32_t ticket = 0;
};

struct swarm_summary {
  binary_id info_hash;
  std::uint32_t seeders = 0;
  std::uint32_t leechers = 0;
};

struct tracker_totals {
  std::size_t swarms = 0;
  std::size_t seeders = 0;
  std::size_t leechers = 0;
  std::size_t pending_offers = 0;
};

class tracker {
 public:
  // budget: shared with the other shards; none means no cap.
  explicit tracker(tracker_config config, std::uint64_t seed = 0x5eed, std::shared_ptr<swarm_budget> budget = nullptr);
  ~tracker();  // gives back the room its swarms hold
  // Movable (the moved-from one holds nothing and gives nothing back), not copyable: two
  // copies would give the same room back twice.
  tracker(tracker&&) = default;
  tracker& operator=(tracker&&) = delete;

  // ticket: the connection's number for this announce, returned in a release of the pair.
  // A peer_id belongs to the connection that announced it into the swarm: an announce of it
  // from another connection is refused (peer_id_in_use, and the pair released to the
  // announcer) while the owner is open and not silent (see owner_silent); a stopped from
  // another connection is answered and changes nothing.
  void on_announce(connection_id conn, const ip_address& from, wt::announce&& a, time_ms now,
                   std::vector<outgoing>& out, std::uint32_t ticket = 0);
  void on_answer(connection_id conn, wt::answer&& a, time_ms now, std::vector<outgoing>& out);
  // Every (info_hash, peer_id) announced on the connection leaves its swarm.
  void on_connection_closed(connection_id conn);
  // Drops peers silent for peer_ttl and offers older than offer_ttl.
  void expire(time_ms now);
  // Appends the pairs released since the last call (see released_peer) and forgets them.
  void take_released(std::vector<released_peer>& out);

  // Unknown info_hashes get zeros, like the reference.
  void scrape(const std::vector<binary_id>& info_hashes, std::vector<wt::scrape_file>& out) const;
  // At most max_scrape_all swarms (the largest first would need a sort; any is fine here).
  void scrape_all(std::vector<wt::scrape_file>& out) const;

  tracker_totals totals() const;
  std::vector<swarm_summary> top_swarms(std::size_t n) const;
  const tracker_counters& counters() const { return counters_; }
  const tracker_config& config() const { return config_; }

  // For tests: an empty string when every internal invariant holds, else what is broken.
  std::string check_invariants() const;

 private:
  struct peer {
    binary_id peer_id;
    std::uint32_t ticket = 0;  // of the owner's latest announce (fills binary_id's padding)
    connection_id conn = 0;
    std::uint64_t subnet = 0;
    time_ms last_seen = 0;
    std::uint32_t subnet_pos = 0;      // position in its swarm's subnet bucket
    std::uint16_t pending_offers = 0;  // relayed offers of this peer not answered yet
    bool seeder = false;
  };
  struct offer_key {
    binary_id offerer;
    binary_id offer_id;
    friend bool operator==(const offer_key&, const offer_key&) = default;
  };
  struct offer_key_hash {
    std::size_t operator()(const offer_key& k) const noexcept {
      return binary_id_hash{}(k.offerer) * 31 + binary_id_hash{}(k.offer_id);
    }
  };
  struct pending_offer {
    binary_id recipient;
    connection_id recipient_conn = 0;
    time_ms expires = 0;
  };
  struct swarm {
    std::vector<peer> peers;  // dense, for O(1) random choice
    std::unordered_map<binary_id, std::uint32_t, binary_id_hash> index;
    std::unordered_map<std::uint64_t, std::vector<std::uint32_t>> by_subnet;  // dense indices
    std::uint32_t seeders = 0;
    std::uint64_t downloaded = 0;  // completed events seen
    std::unordered_map<offer_key, pending_offer, offer_key_hash> offers;
    std::deque<std::pair<time_ms, offer_key>> offer_expiry;  // ttl is constant: FIFO order
  };
  using swarm_map = std::unordered_map<binary_id, swarm, binary_id_hash>;
  struct membership {
    binary_id info_hash;
    binary_id peer_id;
  };

  std::size_t max_pending_per_peer() const { return config_.max_offers * 4; }
  // The owner has not announced the pair (nor answered an offer with it) for an interval and
  // the grace: a live client re-announces every interval_s, so it is gone, or its socket is
  // dead and not yet closed by the transport's keep-alive. Its client may take it back.
  bool owner_silent(const peer& p, time_ms now) const {
    return now - p.last_seen >= time_ms{config_.interval_s} * 1000 + config_.reannounce_grace_ms;
  }
  void refuse_peer_id_in_use(connection_id conn, const wt::announce& a, std::uint32_t ticket,
                             std::vector<outgoing>& out);
  void add_peer(swarm& s, const binary_id& info_hash, const binary_id& peer_id,
                connection_id conn, const ip_address& from, time_ms now, std::uint32_t ticket);
  void remove_peer(swarm& s, const binary_id& info_hash, std::uint32_t index);
  void leave_subnet(swarm& s, std::uint32_t index);
  void set_subnet(swarm& s, std::uint32_t index, std::uint64_t subnet);
  void set_seeder(swarm& s, peer& p, bool seeder);
  void forget_membership(connection_id conn, const binary_id& info_hash, const binary_id& peer_id);
  // Erases an empty swarm and gives its room back; returns the next iterator.
  swarm_map::iterator erase_swarm(swarm_map::iterator it);
  void choose_recipients(const swarm& s, std::uint32_t self, std::size_t k,
                         std::vector<std::uint32_t>& chosen);
  void relay_offers(swarm& s, const binary_id& info_hash, std::uint32_t self, wt::announce& a,
                    time_ms now, std::vector<outgoing>& out);
  void expire_offers(swarm& s, time_ms now);
  wt::announce_response response_for(const binary_id& info_hash, const swarm* s) const;

  tracker_config config_;
  std::mt19937_64 rng_;
  std::shared_ptr<swarm_budget> budget_;
  swarm_map swarms_;
  std::unordered_map<connection_id, std::vector<membership>> connections_;
  std::vector<released_peer> released_;
  tracker_counters counters_;
};

}  // namespace swarmcoord::swarm
