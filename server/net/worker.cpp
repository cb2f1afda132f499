#include "server/net/worker.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>

#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace {
constexpr auto wt_index = static_cast<std::size_t>(metrics::protocol::webtorrent);
constexpr auto native_index = static_cast<std::size_t>(metrics::protocol::native);
constexpr auto expiry_period = std::chrono::seconds(5);
}  // namespace

worker::worker(runtime& rt, unsigned index, unsigned worker_count, const swarm::tracker_config& tracker_config,
               const swarm::mesh_config& mesh_config, unsigned replan_ms)
    : runtime_(rt),
      index_(index),
      tracker_(tracker_config, std::random_device{}() ^ (std::uint64_t{index} << 32)),
      mesh_(mesh_config, std::random_device{}() ^ (std::uint64_t{index} << 40)),
      replan_period_(replan_ms),
      ids_((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      remote_batches_(worker_count) {}

swarm::nv::peer_id worker::new_peer_id() {
  const std::uint64_t random = ids_() & 0xFFFFFFFF00000000ull;
  return random | (std::uint64_t{index_ & 0xFF} << 24) | (++peer_sequence_ & 0xFFFFFF);
}

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
    // Errors the tracker itself raises (too_many_peers) never pass the session's decoder,
    // which counts the others.
    if (const auto* e = std::get_if<swarm::wt::request_error>(&o.message))
      ++counters_.errors[wt_index][static_cast<std::size_t>(e->reason)];
    dispatch(o.to, {std::make_shared<const std::string>(swarm::wt::encode(o.message)),
                    static_cast<std::uint8_t>(o.message.index())});
  }
  out.clear();
  post_batches();
}

void worker::route(std::vector<swarm::mesh_outgoing>& out) {
  for (auto& o : out) {
    if (const auto* e = std::get_if<swarm::nv::error>(&o.message))
      ++counters_.errors[native_index][static_cast<std::size_t>(e->code)];
    dispatch(o.to, {std::make_shared<const std::string>(swarm::nv::encode(o.message)),
                    static_cast<std::uint8_t>(o.message.index()), std::move(o.refused_join)});
  }
  out.clear();
  post_batches();
}

void worker::write_later(std::shared_ptr<connection> c) {
  if (unflushed_.empty()) boost::asio::post(io_, [this] { flush_written_later(); });
  unflushed_.push_back(std::move(c));
}

void worker::flush_written_later() {
  flushing_.swap(unflushed_);
  for (auto& c : flushing_) c->flush();
  flushing_.clear();
}

void worker::dispatch(connection_id to, outbound&& m) {
  const unsigned owner = worker_of(to);
  if (owner == index_) deliver(to, std::move(m));
  else remote_batches_[owner].emplace_back(to, std::move(m));
}

void worker::post_batches() {
  // One post per target worker, however many messages go there.
  for (unsigned w = 0; w < remote_batches_.size(); ++w) {
    if (remote_batches_[w].empty()) continue;
    boost::asio::post(runtime_.at(w).io(), [&target = runtime_.at(w), batch = std::move(remote_batches_[w])]() mutable {
      for (auto& [to, m] : batch) target.deliver(to, std::move(m));
      target.flush_written_later();
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

void worker::handle_peer_gone(swarm::nv::peer_id id) {
  mesh_.on_peer_gone(id, mesh_scratch_);
  route(mesh_scratch_);
}

void worker::start_housekeeping() {
  schedule_expiry();
  schedule_replan();
  schedule_keepalive();
}

void worker::stop_housekeeping() {
  expiry_timer_.cancel();
  replan_timer_.cancel();
  keepalive_timer_.cancel();
}

void worker::schedule_keepalive() {
  // A quarter of the idle timeout, at most a second: pings go out close to half of it.
  const auto idle = std::chrono::milliseconds(std::int64_t{runtime_.cfg().server.idle_timeout_s} * 1000);
  keepalive_timer_.expires_after(std::clamp(idle / 4, std::chrono::milliseconds(100), std::chrono::milliseconds(1000)));
  keepalive_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto now = monotonic_ms();
    // tick() may close a connection, which unregisters it later, never during this loop.
    for (auto& [id, c] : connections_) c->tick(now);
    schedule_keepalive();
  });
}

void worker::schedule_replan() {
  replan_timer_.expires_after(replan_period_);
  replan_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto plans_before = mesh_.counters().plans;
    const auto start = std::chrono::steady_clock::now();
    mesh_.replan(mesh_scratch_);
    if (mesh_.counters().plans != plans_before)
      counters_.observe_plan(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    route(mesh_scratch_);
    schedule_replan();
  });
}

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

  constexpr auto native = static_cast<std::size_t>(metrics::protocol::native);
  const auto mt = mesh_.totals();
  const auto& m = mesh_.counters();
  c.swarms[native] = mt.swarms;
  c.seeders[native] = mt.seeds;
  c.leechers[native] = mt.leechers;
  c.mesh_plans = m.plans;
  for (std::size_t i = 0; i < c.neighbors_assigned.size(); ++i) c.neighbors_assigned[i] = m.neighbors_assigned[i];
  c.links_taken_back = m.links_taken_back;
  c.bad_peer_reports = m.bad_peer_reports;
  for (std::size_t i = 0; i < c.signals_relayed.size(); ++i) c.signals_relayed[i] = m.signals_relayed[i];
  c.signal_failures[0] += m.signal_failures_not_joined;  // += : the session counts some too
  c.signal_failures[1] += m.signal_failures_peer_not_found;
  c.client_bytes = {m.http_bytes, m.p2p_bytes, m.uploaded_bytes};
  return c;
}

}  // namespace swarmcoord::net
