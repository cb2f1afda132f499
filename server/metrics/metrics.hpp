#pragma once
// Prometheus exposition of swarmcoord's numbers. Workers count in plain integers (a
// `counters` each, single-threaded, no atomics on the hot path); at scrape time the admin side
// sums them and `exporter::render` turns the sum into the text format through prometheus-cpp.
// counters: not thread-safe (one owner). exporter: render() from one thread at a time.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace swarmcoord::metrics {

enum class protocol : std::uint8_t { webtorrent = 0, native = 1 };
inline constexpr std::size_t protocol_count = 2;
inline constexpr std::size_t max_labels = 24;  // message types or error reasons per protocol

using per_label = std::array<std::uint64_t, max_labels>;

// Upper bounds (seconds) of the mesh planning time histogram.
inline constexpr std::array<double, 11> plan_bucket_bounds{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
                                                           5e-4, 1e-3, 2.5e-3, 1e-2, 1e-1};
inline constexpr std::size_t plan_buckets = plan_bucket_bounds.size();

struct counters {
  std::array<std::uint64_t, protocol_count> connections{};  // open now (a gauge)
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_rejected = 0;      // over server.max_connections
  std::uint64_t slow_consumers_closed = 0;     // write queue over its bound
  std::uint64_t deliveries_dropped = 0;        // message for a connection already gone
  std::uint64_t reads_throttled = 0;           // pauses over server.max_messages_per_second
  std::array<per_label, protocol_count> received{};
  std::array<per_label, protocol_count> sent{};
  std::array<per_label, protocol_count> errors{};
  // Domain figures (gauges are current values, the rest totals).
  std::array<std::uint64_t, protocol_count> swarms{};
  std::array<std::uint64_t, protocol_count> seeders{};
  std::array<std::uint64_t, protocol_count> leechers{};
  std::uint64_t offers_relayed = 0;
  std::uint64_t offers_unrelayed = 0;
  std::uint64_t answers_relayed = 0;
  std::uint64_t answers_dropped_unknown_offer = 0;
  std::uint64_t answers_dropped_offerer_gone = 0;
  std::uint64_t peers_expired = 0;
  // Native protocol: mesh planning and signaling.
  std::uint64_t mesh_plans = 0;
  std::array<std::uint64_t, plan_buckets + 1> plan_time_buckets{};  // per bucket, last is +Inf
  double plan_time_sum_s = 0;
  std::array<std::uint64_t, 5> neighbors_assigned{};  // site, subnet, asn, country, remote
  std::uint64_t links_taken_back = 0;
  std::uint64_t bad_peer_reports = 0;
  std::array<std::uint64_t, 4> signals_relayed{};     // offer, answer, candidate, other
  std::array<std::uint64_t, 3> signal_failures{};     // not_joined, peer_not_found, too_big
  std::array<std::uint64_t, 3> client_bytes{};        // http, p2p, uploaded

  void observe_plan(double seconds);
  counters& operator+=(const counters& o);
};

// The label values a protocol uses, by index into counters' per_label arrays.
struct protocol_labels {
  std::string_view name;
  std::vector<std::string_view> received_types;
  std::vector<std::string_view> sent_types;
  std::vector<std::string_view> error_reasons;
};

class exporter {
 public:
  exporter(std::string_view version, std::array<protocol_labels, protocol_count> labels);
  ~exporter();
  exporter(const exporter&) = delete;
  exporter& operator=(const exporter&) = delete;

  // Sets every metric from the summed counters and returns the Prometheus text format.
  std::string render(const counters& total);

 private:
  struct handles;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<handles> h_;
};

}  // namespace swarmcoord::metrics
