#include "server/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <functional>
#include <vector>

#include "server/metrics/process_collector.hpp"

namespace swarmcoord::metrics {
namespace {
using prometheus::Counter;
using prometheus::Gauge;
namespace wt = ::swarmcoord::protocol::webtorrent;
namespace nv = ::swarmcoord::protocol::native;
using read_count = std::function<std::uint64_t(const worker_figures&)>;

void raise_to(Counter& c, std::uint64_t total) {
  // Counters only go up; workers' totals only go up too, so this sets the exact value.
  const double v = static_cast<double>(total);
  if (v > c.Value()) c.Increment(v - c.Value());
}
}  // namespace

struct exporter::table {
  std::vector<std::pair<Counter*, read_count>> counters;
  std::vector<std::pair<Gauge*, read_count>> gauges;
  prometheus::Histogram* plan_seconds = nullptr;
  plan_histogram plans_seen;  // what the histogram was fed up to the last scrape
  process_collector process;
};

exporter::exporter(std::string_view version)
    : registry_(std::make_shared<prometheus::Registry>()), table_(std::make_unique<table>()) {
  auto& reg = *registry_;
  table& t = *table_;
  auto counter = [&](const char* name, const char* help) -> auto& {
    return prometheus::BuildCounter().Name(name).Help(help).Register(reg);
  };
  auto gauge = [&](const char* name, const char* help) -> auto& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(reg);
  };
  auto count = [&](prometheus::Family<Counter>& family, const prometheus::Labels& labels, read_count read) {
    t.counters.emplace_back(&family.Add(labels), std::move(read));
  };
  auto show = [&](prometheus::Family<Gauge>& family, const prometheus::Labels& labels, read_count read) {
    t.gauges.emplace_back(&family.Add(labels), std::move(read));
  };
  // One series per entry of an array field, labelled with names[i] (and the protocol).
  auto count_each = [&](prometheus::Family<Counter>& family, prometheus::Labels labels, const char* key,
                        const auto& names, auto array_of) {
    for (std::size_t i = 0; i < std::size(names); ++i) {
      labels[key] = std::string(names[i]);
      count(family, labels, [array_of, i](const worker_figures& f) { return array_of(f)[i]; });
    }
  };
  std::array<std::string_view, wt::error_reason_count> wt_reasons;
  for (std::size_t r = 0; r < wt_reasons.size(); ++r) wt_reasons[r] = wt::to_string(static_cast<wt::error_reason>(r));
  std::array<std::string_view, nv::error_code_count> nv_reasons;
  for (std::size_t c = 0; c < nv_reasons.size(); ++c) nv_reasons[c] = nv::to_string(static_cast<nv::error_code>(c));
  std::array<std::string_view, nv::locality_count> tiers;
  for (std::size_t l = 0; l < tiers.size(); ++l) tiers[l] = nv::to_string(static_cast<nv::locality>(l));
  const std::string wt_name(protocol_names[index_of(protocol::webtorrent)]);
  const std::string nv_name(protocol_names[index_of(protocol::native)]);

  // ---- connections (net)
  auto& connections = gauge("swarmcoord_connections", "Open WebSocket connections.");
  for (std::size_t p = 0; p < protocol_count; ++p)
    show(connections, {{"protocol", std::string(protocol_names[p])}},
         [p](const worker_figures& f) { return f.net.connections[p]; });
  count(counter("swarmcoord_connections_accepted_total", "WebSocket connections accepted."), {},
        [](const worker_figures& f) { return f.net.connections_accepted; });
  count(counter("swarmcoord_connections_rejected_total",
                "Connections refused: WebSocket upgrades over server.max_connections (503), plain HTTP "
                "connections over server.max_http_sessions."),
        {}, [](const worker_figures& f) { return f.net.connections_rejected; });
  // Requests refused for a budget: per address here (the network layer and the sessions
  // count them), global caps of the domain below.
  auto& limited = counter("swarmcoord_limited_total",
                          "Requests refused for a budget (limits.*, tracker.max_swarms): HTTP 429, a closed "
                          "connection or a protocol error.");
  count_each(limited, {}, "limit", limit_names, [](const worker_figures& f) -> const auto& { return f.limits.refused; });
  count_each(counter("swarmcoord_accept_errors_total",
                     "Failed accepts on the public port, by reason (out_of_descriptors: raise the fd limit)."),
             {}, "reason", accept_error_names, [](const worker_figures& f) -> const auto& { return f.net.accept_errors; });
  count(counter("swarmcoord_connections_shed_total",
                "Connections accepted and closed at once because descriptors ran out (on a reserved one)."),
        {}, [](const worker_figures& f) { return f.net.connections_shed; });
  count_each(counter("swarmcoord_upgrades_refused_total",
                     "WebSocket upgrades refused by admission: server.allowed_origins (403) or auth tokens (401)."),
             {}, "reason", upgrade_refusal_names,
             [](const worker_figures& f) -> const auto& { return f.net.upgrades_refused; });
  count(counter("swarmcoord_slow_consumers_closed_total", "Connections closed because their write queue overflowed."),
        {}, [](const worker_figures& f) { return f.net.slow_consumers_closed; });
  count(counter("swarmcoord_deliveries_dropped_total", "Messages for connections that had closed meanwhile."), {},
        [](const worker_figures& f) { return f.net.deliveries_dropped; });
  count(counter("swarmcoord_reads_throttled_total",
                "Pauses in reading from a connection over server.max_messages_per_second."),
        {}, [](const worker_figures& f) { return f.net.reads_throttled; });

  // ---- messages and protocol errors (sessions; message_too_big from the transport)
  auto& received = counter("swarmcoord_messages_received_total", "Messages received from clients.");
  auto& sent = counter("swarmcoord_messages_sent_total", "Messages sent to clients.");
  auto& errors = counter("swarmcoord_protocol_errors_total", "Invalid client messages, by reason.");
  count_each(received, {{"protocol", wt_name}}, "type", wt::client_type_names,
             [](const worker_figures& f) -> const auto& { return f.sessions.webtorrent.received; });
  count_each(sent, {{"protocol", wt_name}}, "type", wt::server_type_names,
             [](const worker_figures& f) -> const auto& { return f.sessions.webtorrent.sent; });
  // Like native errors below: counted by the session (decoding, its own limits) or by the
  // tracker (the swarm's rules: peer_id_in_use, server_full), never by both.
  for (std::size_t r = 0; r < wt_reasons.size(); ++r)
    count(errors, {{"protocol", wt_name}, {"reason", std::string(wt_reasons[r])}},
          [r](const worker_figures& f) { return f.sessions.webtorrent.errors[r] + f.tracker.errors[r]; });
  count_each(received, {{"protocol", nv_name}}, "type", nv::client_type_names,
             [](const worker_figures& f) -> const auto& { return f.sessions.native.received; });
  count_each(sent, {{"protocol", nv_name}}, "type", nv::server_type_names,
             [](const worker_figures& f) -> const auto& { return f.sessions.native.sent; });
  // A native error is counted where it is raised: by the session (decoding, its own limits) or
  // by the mesh (the swarm's rules). Some codes come from both; no error is counted twice.
  for (std::size_t c = 0; c < nv_reasons.size(); ++c)
    count(errors, {{"protocol", nv_name}, {"reason", std::string(nv_reasons[c])}},
          [c](const worker_figures& f) { return f.sessions.native.errors[c] + f.mesh.errors[c]; });
  for (std::size_t p = 0; p < protocol_count; ++p)
    count(errors, {{"protocol", std::string(protocol_names[p])}, {"reason", "message_too_big"}},
          [p](const worker_figures& f) { return f.net.messages_too_big[p]; });

  // ---- swarms and peers (domain)
  auto& swarms = gauge("swarmcoord_swarms", "Swarms with at least one peer.");
  show(swarms, {{"protocol", wt_name}}, [](const worker_figures& f) { return f.tracker_totals.swarms; });
  show(swarms, {{"protocol", nv_name}}, [](const worker_figures& f) { return f.mesh_totals.swarms; });
  auto& peers = gauge("swarmcoord_peers", "Peers in swarms, by role.");
  show(peers, {{"protocol", wt_name}, {"role", "seeder"}}, [](const worker_figures& f) { return f.tracker_totals.seeders; });
  show(peers, {{"protocol", wt_name}, {"role", "leecher"}}, [](const worker_figures& f) { return f.tracker_totals.leechers; });
  show(peers, {{"protocol", nv_name}, {"role", "seeder"}}, [](const worker_figures& f) { return f.mesh_totals.seeds; });
  show(peers, {{"protocol", nv_name}, {"role", "leecher"}}, [](const worker_figures& f) { return f.mesh_totals.leechers; });

  auto& swarm_memory = gauge("swarmcoord_swarm_memory_bytes",
                             "Bytes held by native swarms' block maps (per-block counts and members' bitfields), "
                             "under limits.max_swarm_memory_mb.");
  show(swarm_memory, {}, [](const worker_figures& f) { return f.mesh_totals.block_map_bytes; });

  // ---- global caps (swarm_budget), in swarmcoord_limited_total with the per-address limits
  count(limited, {{"limit", "webtorrent_swarms"}}, [](const worker_figures& f) { return f.tracker.limited_swarms; });
  count(limited, {{"limit", "native_swarms"}}, [](const worker_figures& f) { return f.mesh.limited_swarms; });
  count(limited, {{"limit", "swarm_memory"}}, [](const worker_figures& f) { return f.mesh.limited_memory; });

  // ---- WebTorrent relaying (tracker)
  count(counter("swarmcoord_offers_relayed_total", "WebRTC offers relayed to peers."), {},
        [](const worker_figures& f) { return f.tracker.offers_relayed; });
  count(counter("swarmcoord_offers_unrelayed_total", "Offers not relayed: too few peers, over the cap, or malformed."),
        {}, [](const worker_figures& f) { return f.tracker.offers_unrelayed; });
  count(counter("swarmcoord_answers_relayed_total", "WebRTC answers relayed to offerers."), {},
        [](const worker_figures& f) { return f.tracker.answers_relayed; });
  auto& dropped = counter("swarmcoord_answers_dropped_total", "Answers not relayed, by reason.");
  count(dropped, {{"reason", "unknown_offer"}}, [](const worker_figures& f) { return f.tracker.answers_dropped_unknown_offer; });
  count(dropped, {{"reason", "offerer_gone"}}, [](const worker_figures& f) { return f.tracker.answers_dropped_offerer_gone; });
  count(counter("swarmcoord_peers_expired_total", "Peers removed for not re-announcing."), {},
        [](const worker_figures& f) { return f.tracker.peers_expired; });

  // ---- native mesh and signaling (mesh; signals too big from the session)
  count(counter("swarmcoord_mesh_plans_total", "Mesh planning steps (join, refill, re-plan)."), {},
        [](const worker_figures& f) { return f.mesh.plans; });
  t.plan_seconds = &prometheus::BuildHistogram()
                        .Name("swarmcoord_mesh_plan_seconds")
                        .Help("Time from a join to its neighbours being planned, and of each re-plan pass.")
                        .Register(reg)
                        .Add({}, prometheus::Histogram::BucketBoundaries(plan_bucket_bounds.begin(),
                                                                         plan_bucket_bounds.end()));
  count_each(counter("swarmcoord_neighbors_assigned_total", "Mesh links made, by locality tier."), {}, "locality",
             tiers, [](const worker_figures& f) -> const auto& { return f.mesh.neighbors_assigned; });
  count(counter("swarmcoord_mesh_links_taken_back_total",
                "Links of a full holder given to a peer that had no useful neighbour."),
        {}, [](const worker_figures& f) { return f.mesh.links_taken_back; });
  count(counter("swarmcoord_bad_peer_reports_total",
                "Neighbours reported by native clients for blocks that failed the manifest."),
        {}, [](const worker_figures& f) { return f.mesh.bad_peer_reports; });
  count_each(counter("swarmcoord_signals_relayed_total", "Native signaling messages relayed, by kind."), {}, "kind",
             swarm::signal_kind_names, [](const worker_figures& f) -> const auto& { return f.mesh.signals_relayed; });
  auto& failures = counter("swarmcoord_signal_failures_total", "Native signals not relayed, by reason.");
  count(failures, {{"reason", "not_joined"}}, [](const worker_figures& f) { return f.mesh.signal_failures_not_joined; });
  count(failures, {{"reason", "peer_not_found"}},
        [](const worker_figures& f) { return f.mesh.signal_failures_peer_not_found; });
  count(failures, {{"reason", "not_linked"}}, [](const worker_figures& f) { return f.mesh.signal_failures_not_linked; });
  count(failures, {{"reason", "too_big"}}, [](const worker_figures& f) { return f.sessions.native.signals_too_big; });
  auto& bytes = counter("swarmcoord_client_bytes_total", "Bytes native clients reported, by source.");
  count(bytes, {{"source", "http"}}, [](const worker_figures& f) { return f.mesh.http_bytes; });
  count(bytes, {{"source", "p2p"}}, [](const worker_figures& f) { return f.mesh.p2p_bytes; });
  count(bytes, {{"source", "uploaded"}}, [](const worker_figures& f) { return f.mesh.uploaded_bytes; });

  gauge("swarmcoord_build_info", "Build information; the value is always 1.")
      .Add({{"version", std::string(version)}})
      .Set(1);
}

exporter::~exporter() = default;

std::string exporter::render(const worker_figures& total) {
  table& t = *table_;
  for (auto& [gauge, read] : t.gauges) gauge->Set(static_cast<double>(read(total)));
  for (auto& [counter, read] : t.counters) raise_to(*counter, read(total));
  // The histogram only accepts observations: feed it what arrived since the last scrape.
  std::vector<double> increments(total.plans.buckets.size());
  bool any = false;
  for (std::size_t i = 0; i < increments.size(); ++i) {
    increments[i] = static_cast<double>(total.plans.buckets[i] - t.plans_seen.buckets[i]);
    any = any || increments[i] > 0;
  }
  if (any) {
    t.plan_seconds->ObserveMultiple(increments, total.plans.sum_s - t.plans_seen.sum_s);
    t.plans_seen = total.plans;
  }

  auto families = registry_->Collect();
  auto process = t.process.Collect();
  families.insert(families.end(), process.begin(), process.end());
  return prometheus::TextSerializer{}.Serialize(families);
}

}  // namespace swarmcoord::metrics
