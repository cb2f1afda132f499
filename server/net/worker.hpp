#pragma once
// One worker: an io_context run by one thread, the connections it accepted, and its shard of
// the WebTorrent swarms. Swarm shards are chosen by info_hash, so a message may be handled by
// another worker than the one owning its connection: the runtime posts it there, and the
// results are posted back to the owners of the receiving connections.
// Thread-safety: every member is touched only on this worker's thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "server/net/connection.hpp"
#include "server/swarm/mesh.hpp"
#include "server/swarm/tracker.hpp"

namespace swarmcoord::net {

class runtime;

inline swarm::time_ms monotonic_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

class worker {
 public:
  worker(runtime& rt, unsigned index, unsigned worker_count, const swarm::tracker_config& tracker_config,
         const swarm::mesh_config& mesh_config, unsigned replan_ms);

  boost::asio::io_context& io() { return io_; }
  unsigned index() const { return index_; }
  swarm::tracker& tracker() { return tracker_; }
  swarm::mesh& mesh() { return mesh_; }
  metrics::counters& counters() { return counters_; }

  connection_id register_connection(connection* c);
  void unregister_connection(connection_id id);
  void for_each_connection(const std::function<void(connection&)>& fn);
  void close_going_away(connection_id id);
  std::size_t connection_count() const { return connections_.size(); }

  // Connections with frames queued are written after the handlers already queued on this
  // worker ran (a posted flush, one per round), or at the end of a batch from another worker:
  // under load, every frame that a round of handlers queues for one socket goes out in one
  // write. Measured against flushing at the end of every read: ~125k vs ~95k responses/s
  // at saturation, for ~1-2 ms more p99 latency at half load (bench/compare.sh).
  void write_later(std::shared_ptr<connection> c);
  void flush_written_later();

  // Hands a message to a connection on any worker; counts it lost if the connection is gone.
  void deliver(connection_id to, outbound message);

  // Shard side: run the tracker on one decoded message, then route what it produced.
  void handle_announce(connection_id from, const swarm::ip_address& address,
                       swarm::wt::announce&& a);
  void handle_answer(connection_id from, swarm::wt::answer&& a);

  // Native protocol, shard side: join, have, leave, signal or report of one member.
  template <class Message>
  void handle_native(const swarm::member_info& who, Message&& m);
  void handle_peer_gone(swarm::nv::peer_id id);
  // A fresh peer id: 32 random bits over this worker's index and a sequence, so that ids are
  // unique on this instance and not guessable.
  swarm::nv::peer_id new_peer_id();

  void start_housekeeping();
  void stop_housekeeping();

  // Counters with this shard's domain figures folded in; read on this thread.
  metrics::counters snapshot() const;

 private:
  void route(std::vector<swarm::outgoing>& out);
  void route(std::vector<swarm::mesh_outgoing>& out);
  void schedule_expiry();
  void schedule_replan();
  void schedule_keepalive();
  // Delivers here at once, or queues for the owning worker's batch (sent by post_batches).
  void dispatch(connection_id to, outbound&& m);
  void post_batches();

  runtime& runtime_;
  unsigned index_;
  boost::asio::io_context io_{1};
  swarm::tracker tracker_;
  swarm::mesh mesh_;
  std::chrono::milliseconds replan_period_;
  boost::asio::steady_timer replan_timer_{io_};
  std::mt19937_64 ids_;
  std::uint32_t peer_sequence_ = 0;
  std::vector<swarm::mesh_outgoing> mesh_scratch_;
  metrics::counters counters_;
  std::unordered_map<connection_id, connection*> connections_;
  std::uint64_t next_sequence_ = 1;
  boost::asio::steady_timer expiry_timer_{io_};
  boost::asio::steady_timer keepalive_timer_{io_};
  std::vector<swarm::outgoing> scratch_;
  std::vector<std::shared_ptr<connection>> unflushed_;
  std::vector<std::shared_ptr<connection>> flushing_;
  // Deliveries for other workers, batched per target and posted once per handled message.
  std::vector<std::vector<std::pair<connection_id, outbound>>> remote_batches_;
};

template <class Message>
void worker::handle_native(const swarm::member_info& who, Message&& m) {
  using M = std::decay_t<Message>;
  if constexpr (std::is_same_v<M, swarm::nv::join>) {
    // The planning time of a join is what a joining peer waits for its neighbours.
    const auto start = std::chrono::steady_clock::now();
    mesh_.on_join(who, std::move(m), mesh_scratch_);
    counters_.observe_plan(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  } else if constexpr (std::is_same_v<M, swarm::nv::have>) {
    mesh_.on_have(who, std::move(m), mesh_scratch_);
  } else if constexpr (std::is_same_v<M, swarm::nv::leave>) {
    mesh_.on_leave(who, m, mesh_scratch_);
  } else if constexpr (std::is_same_v<M, swarm::nv::signal>) {
    mesh_.on_signal(who, std::move(m), mesh_scratch_);
  } else {
    static_assert(std::is_same_v<M, swarm::nv::report>);
    mesh_.on_report(who, m, mesh_scratch_);
  }
  route(mesh_scratch_);
}

}  // namespace swarmcoord::net
