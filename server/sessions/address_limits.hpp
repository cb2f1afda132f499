#pragma once
// What one client address may hold at once, across every worker: connections still in their
// HTTP phase, open WebSocket connections, new connections per second, and swarms joined or
// announced into. An address is an IPv4 address or an IPv6 /64 (one machine is usually given
// a whole /64, and could otherwise pose as billions of clients).
//
// Budgets are generous enough for a NAT with hundreds of real users behind it, and stingy for
// one machine pretending to be thousands: the point is that no single address can take the
// port, the workers or the memory from everyone else.
//
// Thread-safe: every worker's sessions share one instance. The table is split into shards,
// each under its own mutex, held for one map operation. Entries whose counts are all zero
// stay until sweep() finds their rate bucket full again (so that connecting and closing at
// once can't reset it): the table holds the addresses with something open, plus those that
// connected in the last few seconds.
#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "server/metrics/counters.hpp"
#include "server/swarm/address.hpp"

namespace swarmcoord::sessions {

using metrics::limit;

struct address_budget {
  std::uint32_t http_sessions = 64;
  std::uint32_t connections = 512;
  double connects_per_second = 50;   // refill rate of the bucket
  std::uint32_t connect_burst = 200;  // its depth
  std::uint32_t swarms = 4096;
};

// The part of an address that limits count: IPv4 whole, IPv6 to its /64.
swarm::ip_address address_key(const swarm::ip_address& a);

class address_limits {
 public:
  explicit address_limits(address_budget budget) : budget_(budget) {}

  // A new TCP connection from a (not a trusted proxy): takes a rate token and an HTTP slot.
  // Returns the limit that refused it, or nothing.
  std::optional<limit> accept(const swarm::ip_address& a, std::int64_t now_ms);
  void end_http(const swarm::ip_address& a);
  // A connection that came through a trusted proxy, named by its forwarded address: only the
  // rate applies (its HTTP phase was the proxy's).
  bool take_connect_token(const swarm::ip_address& a, std::int64_t now_ms);

  bool open_connection(const swarm::ip_address& a);
  void close_connection(const swarm::ip_address& a);

  bool add_swarm(const swarm::ip_address& a);
  void remove_swarms(const swarm::ip_address& a, std::uint32_t n);

  // Drops entries that hold nothing and whose bucket is full again; the housekeeping calls it.
  void sweep(std::int64_t now_ms);

  // For tests and /stats: what an address holds now.
  struct usage {
    std::uint32_t http_sessions = 0, connections = 0, swarms = 0;
  };
  usage of(const swarm::ip_address& a);
  std::size_t tracked();
  const address_budget& budget() const { return budget_; }

 private:
  struct entry {
    std::uint32_t http_sessions = 0, connections = 0, swarms = 0;
    double tokens = 0;
    std::int64_t refilled_ms = 0;
  };
  struct key_hash {
    std::size_t operator()(const swarm::ip_address& a) const noexcept;
  };
  struct shard {
    std::mutex m;
    std::unordered_map<swarm::ip_address, entry, key_hash> entries;
  };
  static constexpr std::size_t shard_count = 16;

  // Runs fn(entry&) on a's entry under its shard's lock, creating it (bucket full) if absent.
  template <class Fn>
  auto with_entry(const swarm::ip_address& a, Fn&& fn);
  bool take_token(entry& e, std::int64_t now_ms) const;

  address_budget budget_;
  std::array<shard, shard_count> shards_;
};

}  // namespace swarmcoord::sessions
