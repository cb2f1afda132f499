#pragma once
// Ids of connections and native peers on one instance, and the one cap on workers they imply.
// A connection id names its home worker in its top bits, so that anyone holding the id can
// route a message to it without a lookup; a native peer id carries the index of the worker
// that handed it out, so that ids of different workers never collide; and a connection's
// route (sessions::route_state) keeps one bit per worker it sent work to. The narrowest of
// these sets how many workers an instance may run.
// Value types and constants only; thread-safe.
#include <cstdint>

namespace swarmcoord::swarm {

using connection_id = std::uint64_t;

// Bits of a connection id above its per-worker sequence: the home worker's index.
inline constexpr unsigned connection_worker_shift = 48;
// Bits of a native peer id that hold the worker index (see make_peer_id).
inline constexpr unsigned peer_worker_bits = 8;
// A route's bit mask of the workers a connection used.
inline constexpr unsigned route_mask_bits = 64;

inline constexpr unsigned max_workers = route_mask_bits;
static_assert(max_workers <= (1u << peer_worker_bits), "peer ids must tell every worker apart");
static_assert(max_workers <= (1u << (64 - connection_worker_shift)), "connection ids must name every worker");

constexpr connection_id make_connection_id(unsigned worker, std::uint64_t sequence) {
  return (static_cast<connection_id>(worker) << connection_worker_shift) | sequence;
}
constexpr unsigned home_worker_of(connection_id id) { return static_cast<unsigned>(id >> connection_worker_shift); }

// 32 random bits over the worker's index and a 24-bit sequence: unique on this instance and
// not guessable.
constexpr std::uint64_t make_peer_id(std::uint64_t random, unsigned worker, std::uint32_t sequence) {
  return (random & 0xFFFFFFFF00000000ull) | (std::uint64_t{worker & ((1u << peer_worker_bits) - 1)} << 24) |
         (sequence & 0xFFFFFF);
}

}  // namespace swarmcoord::swarm
