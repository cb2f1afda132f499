#include "server/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <stdexcept>

#include "server/metrics/process_collector.hpp"

namespace swarmcoord::metrics {

counters& counters::operator+=(const counters& o) {
  auto add = [](auto& a, const auto& b) {
    for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  };
  add(connections, o.connections);
  connections_accepted += o.connections_accepted;
  connections_rejected += o.connections_rejected;
  slow_consumers_closed += o.slow_consumers_closed;
  deliveries_dropped += o.deliveries_dropped;
  reads_throttled += o.reads_throttled;
  for (std::size_t p = 0; p < protocol_count; ++p) {
    add(received[p], o.received[p]);
    add(sent[p], o.sent[p]);
    add(errors[p], o.errors[p]);
  }
  add(swarms, o.swarms);
  add(seeders, o.seeders);
  add(leechers, o.leechers);
  offers_relayed += o.offers_relayed;
  offers_unrelayed += o.offers_unrelayed;
  answers_relayed += o.answers_relayed;
  answers_dropped_unknown_offer += o.answers_dropped_unknown_offer;
  answers_dropped_offerer_gone += o.answers_dropped_offerer_gone;
  peers_expired += o.peers_expired;
  mesh_plans += o.mesh_plans;
  add(plan_time_buckets, o.plan_time_buckets);
  plan_time_sum_s += o.plan_time_sum_s;
  add(neighbors_assigned, o.neighbors_assigned);
  links_taken_back += o.links_taken_back;
  bad_peer_reports += o.bad_peer_reports;
  add(signals_relayed, o.signals_relayed);
  add(signal_failures, o.signal_failures);
  add(client_bytes, o.client_bytes);
  return *this;
}

void counters::observe_plan(double seconds) {
  std::size_t b = 0;
  while (b < plan_buckets && seconds > plan_bucket_bounds[b]) ++b;
  ++plan_time_buckets[b];
  plan_time_sum_s += seconds;
}

namespace {
using prometheus::Counter;
using prometheus::Gauge;

void raise_to(Counter& c, std::uint64_t total) {
  // Counters only go up; workers' totals only go up too, so this sets the exact value.
  const double v = static_cast<double>(total);
  if (v > c.Value()) c.Increment(v - c.Value());
}
}  // namespace

struct exporter::handles {
  struct per_protocol {
    Gauge* connections;
    Gauge* swarms;
    Gauge* seeders;
    Gauge* leechers;
    std::vector<Counter*> received, sent, errors;
  };
  std::array<per_protocol, protocol_count> proto;
  Counter* accepted;
  Counter* rejected;
  Counter* slow_consumers;
  Counter* deliveries_dropped;
  Counter* reads_throttled;
  Counter* offers_relayed;
  Counter* offers_unrelayed;
  Counter* answers_relayed;
  Counter* answers_dropped_unknown_offer;
  Counter* answers_dropped_offerer_gone;
  Counter* peers_expired;
  Counter* mesh_plans;
  prometheus::Histogram* plan_seconds;
  std::array<std::uint64_t, plan_buckets + 1> plan_buckets_seen{};
  double plan_sum_seen = 0;
  std::array<Counter*, 5> neighbors_assigned;
  Counter* links_taken_back;
  Counter* bad_peer_reports;
  std::array<Counter*, 4> signals_relayed;
  std::array<Counter*, 3> signal_failures;
  std::array<Counter*, 3> client_bytes;
  process_collector process;
};

exporter::exporter(std::string_view version, std::array<protocol_labels, protocol_count> labels)
    : registry_(std::make_shared<prometheus::Registry>()), h_(std::make_unique<handles>()) {
  auto& reg = *registry_;
  auto counter = [&](const char* name, const char* help) -> auto& {
    return prometheus::BuildCounter().Name(name).Help(help).Register(reg);
  };
  auto gauge = [&](const char* name, const char* help) -> auto& {
    return prometheus::BuildGauge().Name(name).Help(help).Register(reg);
  };
  auto& connections = gauge("swarmcoord_connections", "Open WebSocket connections.");
  auto& received = counter("swarmcoord_messages_received_total", "Messages received from clients.");
  auto& sent = counter("swarmcoord_messages_sent_total", "Messages sent to clients.");
  auto& errors = counter("swarmcoord_protocol_errors_total", "Invalid client messages, by reason.");
  auto& swarms = gauge("swarmcoord_swarms", "Swarms with at least one peer.");
  auto& peers = gauge("swarmcoord_peers", "Peers in swarms, by role.");
  for (std::size_t p = 0; p < protocol_count; ++p) {
    const auto& l = labels[p];
    if (l.received_types.size() > max_labels || l.sent_types.size() > max_labels || l.error_reasons.size() > max_labels)
      throw std::logic_error("metrics: more labels than counters::max_labels for " + std::string(l.name));
    const std::string name(labels[p].name);
    auto& hp = h_->proto[p];
    hp.connections = &connections.Add({{"protocol", name}});
    hp.swarms = &swarms.Add({{"protocol", name}});
    hp.seeders = &peers.Add({{"protocol", name}, {"role", "seeder"}});
    hp.leechers = &peers.Add({{"protocol", name}, {"role", "leecher"}});
    for (auto t : labels[p].received_types)
      hp.received.push_back(&received.Add({{"protocol", name}, {"type", std::string(t)}}));
    for (auto t : labels[p].sent_types)
      hp.sent.push_back(&sent.Add({{"protocol", name}, {"type", std::string(t)}}));
    for (auto r : labels[p].error_reasons)
      hp.errors.push_back(&errors.Add({{"protocol", name}, {"reason", std::string(r)}}));
  }
  h_->accepted = &counter("swarmcoord_connections_accepted_total", "WebSocket connections accepted.").Add({});
  h_->rejected = &counter("swarmcoord_connections_rejected_total",
                          "WebSocket upgrades refused with 503 over server.max_connections.").Add({});
  h_->slow_consumers = &counter("swarmcoord_slow_consumers_closed_total",
                                "Connections closed because their write queue overflowed.").Add({});
  h_->deliveries_dropped = &counter("swarmcoord_deliveries_dropped_total",
                                    "Messages for connections that had closed meanwhile.").Add({});
  h_->reads_throttled = &counter("swarmcoord_reads_throttled_total",
                                 "Pauses in reading from a connection over server.max_messages_per_second.").Add({});
  h_->offers_relayed = &counter("swarmcoord_offers_relayed_total", "WebRTC offers relayed to peers.").Add({});
  h_->offers_unrelayed = &counter("swarmcoord_offers_unrelayed_total",
                                  "Offers not relayed: too few peers, over the cap, or malformed.").Add({});
  h_->answers_relayed = &counter("swarmcoord_answers_relayed_total", "WebRTC answers relayed to offerers.").Add({});
  auto& dropped = counter("swarmcoord_answers_dropped_total", "Answers not relayed, by reason.");
  h_->answers_dropped_unknown_offer = &dropped.Add({{"reason", "unknown_offer"}});
  h_->answers_dropped_offerer_gone = &dropped.Add({{"reason", "offerer_gone"}});
  h_->peers_expired = &counter("swarmcoord_peers_expired_total", "Peers removed for not re-announcing.").Add({});
  h_->mesh_plans = &counter("swarmcoord_mesh_plans_total", "Mesh planning steps (join, refill, re-plan).").Add({});
  h_->plan_seconds = &prometheus::BuildHistogram()
                          .Name("swarmcoord_mesh_plan_seconds")
                          .Help("Time from a join to its neighbours being planned, and of each re-plan pass.")
                          .Register(reg)
                          .Add({}, prometheus::Histogram::BucketBoundaries(plan_bucket_bounds.begin(),
                                                                           plan_bucket_bounds.end()));
  auto& assigned = counter("swarmcoord_neighbors_assigned_total", "Mesh links made, by locality tier.");
  const char* tiers[] = {"site", "subnet", "asn", "country", "remote"};
  for (std::size_t i = 0; i < 5; ++i) h_->neighbors_assigned[i] = &assigned.Add({{"locality", tiers[i]}});
  h_->links_taken_back = &counter("swarmcoord_mesh_links_taken_back_total",
                                  "Links of a full holder given to a peer that had no useful neighbour.").Add({});
  h_->bad_peer_reports = &counter("swarmcoord_bad_peer_reports_total",
                                  "Neighbours reported by native clients for blocks that failed the manifest.").Add({});
  auto& relayed = counter("swarmcoord_signals_relayed_total", "Native signaling messages relayed, by kind.");
  const char* kinds[] = {"offer", "answer", "candidate", "other"};
  for (std::size_t i = 0; i < 4; ++i) h_->signals_relayed[i] = &relayed.Add({{"kind", kinds[i]}});
  auto& failures = counter("swarmcoord_signal_failures_total", "Native signals not relayed, by reason.");
  const char* reasons[] = {"not_joined", "peer_not_found", "too_big"};
  for (std::size_t i = 0; i < 3; ++i) h_->signal_failures[i] = &failures.Add({{"reason", reasons[i]}});
  auto& bytes = counter("swarmcoord_client_bytes_total", "Bytes native clients reported, by source.");
  const char* sources[] = {"http", "p2p", "uploaded"};
  for (std::size_t i = 0; i < 3; ++i) h_->client_bytes[i] = &bytes.Add({{"source", sources[i]}});
  gauge("swarmcoord_build_info", "Build information; the value is always 1.")
      .Add({{"version", std::string(version)}})
      .Set(1);
}

exporter::~exporter() = default;

std::string exporter::render(const counters& t) {
  for (std::size_t p = 0; p < protocol_count; ++p) {
    auto& hp = h_->proto[p];
    hp.connections->Set(static_cast<double>(t.connections[p]));
    hp.swarms->Set(static_cast<double>(t.swarms[p]));
    hp.seeders->Set(static_cast<double>(t.seeders[p]));
    hp.leechers->Set(static_cast<double>(t.leechers[p]));
    for (std::size_t i = 0; i < hp.received.size(); ++i) raise_to(*hp.received[i], t.received[p][i]);
    for (std::size_t i = 0; i < hp.sent.size(); ++i) raise_to(*hp.sent[i], t.sent[p][i]);
    for (std::size_t i = 0; i < hp.errors.size(); ++i) raise_to(*hp.errors[i], t.errors[p][i]);
  }
  raise_to(*h_->accepted, t.connections_accepted);
  raise_to(*h_->rejected, t.connections_rejected);
  raise_to(*h_->slow_consumers, t.slow_consumers_closed);
  raise_to(*h_->deliveries_dropped, t.deliveries_dropped);
  raise_to(*h_->reads_throttled, t.reads_throttled);
  raise_to(*h_->offers_relayed, t.offers_relayed);
  raise_to(*h_->offers_unrelayed, t.offers_unrelayed);
  raise_to(*h_->answers_relayed, t.answers_relayed);
  raise_to(*h_->answers_dropped_unknown_offer, t.answers_dropped_unknown_offer);
  raise_to(*h_->answers_dropped_offerer_gone, t.answers_dropped_offerer_gone);
  raise_to(*h_->peers_expired, t.peers_expired);
  raise_to(*h_->mesh_plans, t.mesh_plans);
  {
    // The histogram only accepts observations: feed it what arrived since the last scrape.
    std::vector<double> increments(plan_buckets + 1);
    bool any = false;
    for (std::size_t i = 0; i <= plan_buckets; ++i) {
      increments[i] = static_cast<double>(t.plan_time_buckets[i] - h_->plan_buckets_seen[i]);
      any = any || increments[i] > 0;
    }
    if (any) {
      h_->plan_seconds->ObserveMultiple(increments, t.plan_time_sum_s - h_->plan_sum_seen);
      h_->plan_buckets_seen = t.plan_time_buckets;
      h_->plan_sum_seen = t.plan_time_sum_s;
    }
  }
  for (std::size_t i = 0; i < 5; ++i) raise_to(*h_->neighbors_assigned[i], t.neighbors_assigned[i]);
  raise_to(*h_->links_taken_back, t.links_taken_back);
  raise_to(*h_->bad_peer_reports, t.bad_peer_reports);
  for (std::size_t i = 0; i < 4; ++i) raise_to(*h_->signals_relayed[i], t.signals_relayed[i]);
  for (std::size_t i = 0; i < 3; ++i) raise_to(*h_->signal_failures[i], t.signal_failures[i]);
  for (std::size_t i = 0; i < 3; ++i) raise_to(*h_->client_bytes[i], t.client_bytes[i]);

  auto families = registry_->Collect();
  auto process = h_->process.Collect();
  families.insert(families.end(), process.begin(), process.end());
  return prometheus::TextSerializer{}.Serialize(families);
}

}  // namespace swarmcoord::metrics
