#include "server/metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

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
  return *this;
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
  Counter* offers_relayed;
  Counter* offers_unrelayed;
  Counter* answers_relayed;
  Counter* answers_dropped_unknown_offer;
  Counter* answers_dropped_offerer_gone;
  Counter* peers_expired;
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
  h_->offers_relayed = &counter("swarmcoord_offers_relayed_total", "WebRTC offers relayed to peers.").Add({});
  h_->offers_unrelayed = &counter("swarmcoord_offers_unrelayed_total",
                                  "Offers not relayed: too few peers, over the cap, or malformed.").Add({});
  h_->answers_relayed = &counter("swarmcoord_answers_relayed_total", "WebRTC answers relayed to offerers.").Add({});
  auto& dropped = counter("swarmcoord_answers_dropped_total", "Answers not relayed, by reason.");
  h_->answers_dropped_unknown_offer = &dropped.Add({{"reason", "unknown_offer"}});
  h_->answers_dropped_offerer_gone = &dropped.Add({{"reason", "offerer_gone"}});
  h_->peers_expired = &counter("swarmcoord_peers_expired_total", "Peers removed for not re-announcing.").Add({});
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
  raise_to(*h_->offers_relayed, t.offers_relayed);
  raise_to(*h_->offers_unrelayed, t.offers_unrelayed);
  raise_to(*h_->answers_relayed, t.answers_relayed);
  raise_to(*h_->answers_dropped_unknown_offer, t.answers_dropped_unknown_offer);
  raise_to(*h_->answers_dropped_offerer_gone, t.answers_dropped_offerer_gone);
  raise_to(*h_->peers_expired, t.peers_expired);

  auto families = registry_->Collect();
  auto process = h_->process.Collect();
  families.insert(families.end(), process.begin(), process.end());
  return prometheus::TextSerializer{}.Serialize(families);
}

}  // namespace swarmcoord::metrics
