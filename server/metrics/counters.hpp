#pragma once
// What a worker counts, by who counts it. Each figure is counted in exactly one place and
// named there (a struct field, never an index literal); /metrics and /stats read a
// `worker_figures` of every worker and sum them with `accumulate`, which walks any of these
// structs field by field, so that a new field needs no summing code of its own.
// Adding a metric: a field where it is counted, a row in exporter's table (metrics.cpp).
// Plain values; each instance has one owner thread.
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/pfr/core.hpp>

#include "protocol/native.hpp"
#include "protocol/webtorrent.hpp"
#include "server/swarm/mesh.hpp"
#include "server/swarm/tracker.hpp"

namespace swarmcoord::metrics {

// The protocol a WebSocket connection speaks (a metric label).
enum class protocol : std::uint8_t { webtorrent = 0, native = 1 };
inline constexpr std::size_t protocol_count = 2;
inline constexpr std::string_view protocol_names[protocol_count] = {"webtorrent", "native"};
constexpr std::size_t index_of(protocol p) { return static_cast<std::size_t>(p); }

// swarmcoord_limited_total{limit}: each budget a request can be refused for (limits.*_per_address).
enum class limit : std::uint8_t {
  http_sessions_per_address,  // connections not yet upgraded (or health checks) from one address
  connections_per_address,    // open WebSocket connections from one address
  connect_rate_per_address,   // new connections per second from one address
  swarms_per_address,         // swarms joined / announced into from one address
};
inline constexpr std::size_t limit_count = 4;
inline constexpr std::string_view limit_names[limit_count] = {
    "http_sessions_per_address", "connections_per_address", "connect_rate_per_address", "swarms_per_address"};
// Counted by whoever refuses: the network layer at accept and upgrade, sessions at announce/join.
struct limit_counters {
  std::array<std::uint64_t, limit_count> refused{};
  void count(limit l) { ++refused[static_cast<std::size_t>(l)]; }
};

// Why accept() failed on the public port (swarmcoord_accept_errors_total{reason}).
enum class accept_error : std::uint8_t { out_of_descriptors, out_of_memory, other };
inline constexpr std::size_t accept_error_count = 3;
inline constexpr std::string_view accept_error_names[accept_error_count] = {"out_of_descriptors", "out_of_memory",
                                                                            "other"};

// Why a WebSocket upgrade was refused by admission (swarmcoord_upgrades_refused_total{reason}).
enum class upgrade_refusal : std::uint8_t { origin, missing_origin, token_missing, token_invalid, token_expired };
inline constexpr std::size_t upgrade_refusal_count = 5;
inline constexpr std::string_view upgrade_refusal_names[upgrade_refusal_count] = {
    "origin", "missing_origin", "token_missing", "token_invalid", "token_expired"};

// Counted by the network layer: connections and their transports, deliveries between workers.
struct net_counters {
  std::array<std::uint64_t, protocol_count> connections{};  // open now (a gauge)
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_rejected = 0;   // over server.max_connections or max_http_sessions
  std::uint64_t slow_consumers_closed = 0;  // write queue over its bound
  std::uint64_t reads_throttled = 0;        // pauses over server.max_messages_per_second
  std::uint64_t deliveries_dropped = 0;     // a message for a connection already gone
  std::array<std::uint64_t, protocol_count> messages_too_big{};  // closed with 1009
  std::array<std::uint64_t, accept_error_count> accept_errors{};
  std::uint64_t connections_shed = 0;       // accepted and closed at once, out of descriptors
  std::array<std::uint64_t, upgrade_refusal_count> upgrades_refused{};
};

// Counted by the protocol sessions: messages by type, protocol errors by reason.
struct webtorrent_session_counters {
  std::array<std::uint64_t, std::variant_size_v<::swarmcoord::protocol::webtorrent::client_message>> received{};
  std::array<std::uint64_t, std::variant_size_v<::swarmcoord::protocol::webtorrent::server_message>> sent{};
  std::array<std::uint64_t, ::swarmcoord::protocol::webtorrent::error_reason_count> errors{};
};
struct native_session_counters {
  std::array<std::uint64_t, std::variant_size_v<::swarmcoord::protocol::native::client_message>> received{};
  std::array<std::uint64_t, std::variant_size_v<::swarmcoord::protocol::native::server_message>> sent{};
  std::array<std::uint64_t, ::swarmcoord::protocol::native::error_code_count> errors{};
  std::uint64_t signals_too_big = 0;  // signal.data over signal.max_bytes, never relayed
};
struct session_counters {
  webtorrent_session_counters webtorrent;
  native_session_counters native;
};

// Mesh planning time (join to neighbours planned, and each re-plan pass), counted by the
// worker that owns the swarm.
inline constexpr std::array<double, 11> plan_bucket_bounds{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
                                                           5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1};
struct plan_histogram {
  std::array<std::uint64_t, plan_bucket_bounds.size() + 1> buckets{};  // the last is +Inf
  double sum_s = 0;
  void observe(double seconds) {
    std::size_t b = 0;
    while (b < plan_bucket_bounds.size() && seconds > plan_bucket_bounds[b]) ++b;
    ++buckets[b];
    sum_s += seconds;
  }
};

// Everything one worker knows, read on its thread.
struct worker_figures {
  net_counters net;
  limit_counters limits;
  session_counters sessions;
  swarm::tracker_counters tracker;
  swarm::tracker_totals tracker_totals;
  swarm::mesh_counters mesh;
  swarm::mesh_totals mesh_totals;
  plan_histogram plans;
};

// into += from, for numbers, arrays of them and aggregates of those (field by field).
template <class T>
void accumulate(T& into, const T& from) {
  if constexpr (std::is_arithmetic_v<T>) {
    into += from;
  } else if constexpr (requires { std::tuple_size<T>::value; into[0]; }) {
    for (std::size_t i = 0; i < into.size(); ++i) accumulate(into[i], from[i]);
  } else {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (accumulate(boost::pfr::get<I>(into), boost::pfr::get<I>(from)), ...);
    }(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
  }
}

}  // namespace swarmcoord::metrics
