#include "server/net/worker.hpp"

#include <boost/asio/post.hpp>

#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace {
constexpr auto wt_index = static_cast<std::size_t>(metrics::protocol::webtorrent);
constexpr auto expiry_period = std::chrono::seconds(5);
}  // namespace

worker::worker(runtime& rt, unsigned index, unsigned worker_count,
               const swarm::tracker_config& tracker_config)
    : runtime_(rt),
      index_(index),
      tracker_(tracker_config, 0x9E3779B97F4A7C15ull ^ (index + 1) ^
                                   static_cast<std::uint64_t>(monotonic_ms())),
      remote_batches_(worker_count) {}

connection_id worker::register_connection(connection* c) {
  connection_id id = (static_cast<connection_id>(index_) << worker_shift) | next_sequence_++;
  connections_.emplace(id, c);
  return id;
}

void worker::unregister_connection(connection_id id) { connections_.erase(id); }

void worker::for_each_connection(const std::function<void(connection&)>& fn) {
  // Copy first: fn may close a connection, which unregisters it.
  std::vector<connection*> all;
  all.reserve(connections_.size());
  for (auto& [id, c] : connections_) all.push_back(c);
  for (auto* c : all) fn(*c);
}

void worker::close_going_away(connection_id id) {
  if (auto it = connections_.find(id); it != connections_.end()) it->second->close_going_away();
}

void worker::deliver(connection_id to, outbound message) {
  const unsigned owner = worker_of(to);
  if (owner != index_) {
    boost::asio::post(runtime_.at(owner).io(), [&target = runtime_.at(owner), to, m = std::move(message)]() mutable {
      target.deliver(to, std::move(m));
    });
    return;
  }
  auto it = connections_.find(to);
  if (it == connections_.end()) {
    ++counters_.deliveries_dropped;
    return;
  }
  it->second->send(std::move(message));
}

void worker::route(std::vector<swarm::outgoing>& out) {
  for (auto& o : out) {
    outbound m{std::make_shared<const std::string>(swarm::wt::encode(o.message)),
               static_cast<std::uint8_t>(o.message.index())};
    const unsigned owner = worker_of(o.to);
    if (owner == index_) deliver(o.to, std::move(m));
    else remote_batches_[owner].emplace_back(o.to, std::move(m));
  }
  out.clear();
  // One post per target worker, however many messages go there.
  for (unsigned w = 0; w < remote_batches_.size(); ++w) {
    if (remote_batches_[w].empty()) continue;
    boost::asio::post(runtime_.at(w).io(), [&target = runtime_.at(w), batch = std::move(remote_batches_[w])]() mutable {
      for (auto& [to, m] : batch) target.deliver(to, std::move(m));
    });
    remote_batches_[w] = {};
  }
}

void worker::handle_announce(connection_id from, const swarm::ip_address& address,
                             swarm::wt::announce&& a) {
  tracker_.on_announce(from, address, std::move(a), monotonic_ms(), scratch_);
  route(scratch_);
}

void worker::handle_answer(connection_id from, swarm::wt::answer&& a) {
  tracker_.on_answer(from, std::move(a), monotonic_ms(), scratch_);
  route(scratch_);
}

void worker::start_housekeeping() { schedule_expiry(); }

void worker::stop_housekeeping() { expiry_timer_.cancel(); }

void worker::schedule_expiry() {
  expiry_timer_.expires_after(expiry_period);
  expiry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    tracker_.expire(monotonic_ms());
    schedule_expiry();
  });
}

metrics::counters worker::snapshot() const {
  metrics::counters c = counters_;
  const auto totals = tracker_.totals();
  const auto& t = tracker_.counters();
  c.swarms[wt_index] = totals.swarms;
  c.seeders[wt_index] = totals.seeders;
  c.leechers[wt_index] = totals.leechers;
  c.offers_relayed = t.offers_relayed;
  c.offers_unrelayed = t.offers_unrelayed;
  c.answers_relayed = t.answers_relayed;
  c.answers_dropped_unknown_offer = t.answers_dropped_unknown_offer;
  c.answers_dropped_offerer_gone = t.answers_dropped_offerer_gone;
  c.peers_expired = t.peers_expired;
  return c;
}

}  // namespace swarmcoord::net
