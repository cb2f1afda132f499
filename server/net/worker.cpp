#include "server/net/worker.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>

#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace {
constexpr auto expiry_period = std::chrono::seconds(5);


double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

worker::worker(runtime& rt, unsigned index, unsigned worker_count, const swarm::tracker_config& tracker_config,
               const swarm::mesh_config& mesh_config, unsigned replan_ms, std::shared_ptr<swarm::swarm_budget> budget)
    : runtime_(rt),
      index_(index),
      router_(rt, *this),
      tracker_(tracker_config, std::random_device{}() ^ (std::uint64_t{index} << 32), budget),
      mesh_(mesh_config, std::random_device{}() ^ (std::uint64_t{index} << 40), budget),
      replan_period_(replan_ms),
      ids_((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      remote_batches_(worker_count) {}

swarm::nv::peer_id worker::new_peer_id() { return swarm::make_peer_id(ids_(), index_, ++peer_sequence_); }

connection_id worker::register_connection(connection* c) {
  const connection_id id = swarm::make_connection_id(index_, next_sequence_++);
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

void worker::write_later(std::shared_ptr<connection> c) {
  if (unflushed_.empty()) boost::asio::post(io_, [this] { flush_written_later(); });
  unflushed_.push_back(std::move(c));
}

void worker::flush_written_later() {
  flushing_.swap(unflushed_);
  for (auto& c : flushing_) c->flush();
  flushing_.clear();
}

// ------------------------------------------------------------------ delivery to homes
void worker::deliver(connection_id to, sessions::home_message&& m) {
  const unsigned home = swarm::home_worker_of(to);
  if (home != index_) {
    boost::asio::post(runtime_.at(home).io(), [&target = runtime_.at(home), to, m = std::move(m)]() mutable {
      target.deliver(to, std::move(m));
    });
    return;
  }
  auto it = connections_.find(to);
  if (it == connections_.end()) {
    // Counted: messages that would have gone on the wire (notices for a gone session are moot).
    if (std::holds_alternative<sessions::outbound>(m) || std::holds_alternative<sessions::scrape_result>(m))
      ++net_counters_.deliveries_dropped;
    return;
  }
  it->second->deliver(std::move(m));
}

void worker::deliver_batched(connection_id to, sessions::home_message&& m) {
  const unsigned home = swarm::home_worker_of(to);
  if (home == index_) deliver(to, std::move(m));
  else remote_batches_[home].emplace_back(to, std::move(m));
}

void worker::post_batches() {
  // One post per home worker, however many results go there.
  for (unsigned w = 0; w < remote_batches_.size(); ++w) {
    if (remote_batches_[w].empty()) continue;
    boost::asio::post(runtime_.at(w).io(), [&target = runtime_.at(w), batch = std::move(remote_batches_[w])]() mutable {
      for (auto& [to, m] : batch) target.deliver(to, std::move(m));
      target.flush_written_later();
    });
    remote_batches_[w] = {};
  }
}

void worker::emit(std::vector<swarm::outgoing>& out) {
  for (auto& o : out)
    deliver_batched(o.to, sessions::outbound{std::make_shared<const std::string>(swarm::wt::encode(o.message)),
                                      static_cast<std::uint8_t>(o.message.index())});
  out.clear();
  emit_released();
}

void worker::emit(std::vector<swarm::mesh_outgoing>& out) {
  for (auto& o : out)
    deliver_batched(o.to, sessions::outbound{std::make_shared<const std::string>(swarm::nv::encode(o.message)),
                                      static_cast<std::uint8_t>(o.message.index())});
  out.clear();
}

void worker::emit_released() {
  tracker_.take_released(released_);
  for (const auto& r : released_) deliver_batched(r.conn, sessions::pair_released{r.info_hash, r.peer_id, r.ticket});
  released_.clear();
}

// ------------------------------------------------------------------ owner side
void worker::handle(sessions::owner_request&& request) {
  std::visit(sessions::overloaded{
                 [&](sessions::announce_request& a) {
                   tracker_.on_announce(a.from, a.address, std::move(a.announce), monotonic_ms(), scratch_, a.ticket);
                   emit(scratch_);
                 },
                 [&](sessions::answer_request& a) {
                   tracker_.on_answer(a.from, std::move(a.answer), monotonic_ms(), scratch_);
                   emit(scratch_);
                 },
                 [&](sessions::native_request& n) { handle_native(n.who, std::move(n.message), n.join_ticket); },
             },
             request);
  post_batches();
}

void worker::handle_native(const swarm::member_info& who, sessions::native_message&& m, std::uint32_t join_ticket) {
  const auto now = monotonic_ms();
  std::visit(sessions::overloaded{
                 [&](swarm::nv::join& j) {
                   // The planning time of a join is what a joining peer waits for its neighbours.
                   std::string swarm = j.swarm;
                   const auto start = std::chrono::steady_clock::now();
                   const auto outcome = mesh_.on_join(who, std::move(j), now, mesh_scratch_);
                   plans_.observe(seconds_since(start));
                   emit(mesh_scratch_);
                   if (outcome == swarm::join_outcome::refused) deliver_batched(who.conn, sessions::join_refused{std::move(swarm), join_ticket});
                 },
                 [&](swarm::nv::have& h) { mesh_.on_have(who, std::move(h), mesh_scratch_); },
                 [&](swarm::nv::leave& l) { mesh_.on_leave(who, l, now, mesh_scratch_); },
                 [&](swarm::nv::signal& s) { mesh_.on_signal(who, std::move(s), now, mesh_scratch_); },
                 [&](swarm::nv::report& r) { mesh_.on_report(who, r, now, mesh_scratch_); },
             },
             m);
  emit(mesh_scratch_);
}

void worker::handle(const sessions::connection_gone& gone) {
  if (gone.native_peer) {
    mesh_.on_peer_gone(*gone.native_peer, monotonic_ms(), mesh_scratch_);
    emit(mesh_scratch_);
    post_batches();
  } else {
    tracker_.on_connection_closed(gone.conn);
  }
}

// ------------------------------------------------------------------ housekeeping
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
    mesh_.replan(monotonic_ms(), mesh_scratch_);
    if (mesh_.counters().plans != plans_before) plans_.observe(seconds_since(start));
    emit(mesh_scratch_);
    post_batches();
    schedule_replan();
  });
}

void worker::schedule_expiry() {
  expiry_timer_.expires_after(expiry_period);
  expiry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    tracker_.expire(monotonic_ms());
    // The per-address table is shared: one worker sweeps it.
    if (index_ == 0) runtime_.address_limits().sweep(monotonic_ms());
    emit_released();
    post_batches();
    schedule_expiry();
  });
}

metrics::worker_figures worker::figures() const {
  return {net_counters_, limit_counters_, session_counters_, tracker_.counters(), tracker_.totals(),
          mesh_.counters(), mesh_.totals(), plans_};
}

}  // namespace swarmcoord::net
