#pragma once
// One worker: an io_context run by one thread, the connections whose home it is, and its
// shard of the swarms of both protocols, whose owner it is. A connection's requests go to the
// owner of their swarm through the worker's router (local_router.hpp); the owner runs them on
// its tracker or mesh and sends each result to the home of the connection it is for.
// Thread-safety: every member is touched only on this worker's thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <random>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "server/metrics/counters.hpp"
#include "server/net/connection.hpp"
#include "server/net/local_router.hpp"
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
  // budget: the swarm caps, shared by every worker's tracker and mesh.
  worker(runtime& rt, unsigned index, unsigned worker_count, const swarm::tracker_config& tracker_config,
         const swarm::mesh_config& mesh_config, unsigned replan_ms, std::shared_ptr<swarm::swarm_budget> budget);

  boost::asio::io_context& io() { return io_; }
  unsigned index() const { return index_; }
  swarm::tracker& tracker() { return tracker_; }
  swarm::mesh& mesh() { return mesh_; }
  sessions::router& router() { return router_; }
  metrics::net_counters& net_counters() { return net_counters_; }
  metrics::session_counters& session_counters() { return session_counters_; }
  metrics::limit_counters& limit_counters() { return limit_counters_; }

  // ---- home side: the connections of this worker
  connection_id register_connection(connection* c);
  void unregister_connection(connection_id id);
  void for_each_connection(const std::function<void(connection&)>& fn);
  void close_going_away(connection_id id);
  std::size_t connection_count() const { return connections_.size(); }
  // A fresh native peer id (swarm::make_peer_id).
  swarm::nv::peer_id new_peer_id();

  // Connections with frames queued are written after the handlers already queued on this
  // worker ran (a posted flush, one per round), or at the end of a batch from another worker:
  // under load, every frame that a round of handlers queues for one socket goes out in one
  // write. Measured against flushing at the end of every read: ~125k vs ~95k responses/s
  // at saturation, for ~1-2 ms more p99 latency at half load (bench/compare.sh).
  void write_later(std::shared_ptr<connection> c);
  void flush_written_later();

  // Hands a result to a connection on any worker; counts it dropped if the connection is gone.
  void deliver(connection_id to, sessions::home_message&& m);

  // ---- owner side: the swarms of this worker's shard
  void handle(sessions::owner_request&& request);
  void handle(const sessions::connection_gone& gone);

  void start_housekeeping();
  void stop_housekeeping();

  // What this worker counted and holds; read on its thread.
  metrics::worker_figures figures() const;

 private:
  void handle_native(const swarm::member_info& who, sessions::native_message&& m, std::uint32_t join_ticket);
  // Encodes the domain's messages and sends each to its connection's home (batched, see
  // post_batches); then the pairs the tracker released, to their connections.
  void emit(std::vector<swarm::outgoing>& out);
  void emit(std::vector<swarm::mesh_outgoing>& out);
  void emit_released();
  // Delivers here at once, or queues for the home worker's batch (sent by post_batches).
  void deliver_batched(connection_id to, sessions::home_message&& m);
  void post_batches();
  void schedule_expiry();
  void schedule_replan();
  void schedule_keepalive();

  runtime& runtime_;
  unsigned index_;
  boost::asio::io_context io_{1};
  local_router router_;
  swarm::tracker tracker_;
  swarm::mesh mesh_;
  std::chrono::milliseconds replan_period_;
  boost::asio::steady_timer replan_timer_{io_};
  boost::asio::steady_timer expiry_timer_{io_};
  boost::asio::steady_timer keepalive_timer_{io_};
  std::mt19937_64 ids_;
  std::uint32_t peer_sequence_ = 0;
  std::uint64_t next_sequence_ = 1;
  std::unordered_map<connection_id, connection*> connections_;
  metrics::net_counters net_counters_;
  metrics::session_counters session_counters_;
  metrics::limit_counters limit_counters_;
  metrics::plan_histogram plans_;
  std::vector<swarm::outgoing> scratch_;
  std::vector<swarm::mesh_outgoing> mesh_scratch_;
  std::vector<swarm::released_peer> released_;
  std::vector<std::shared_ptr<connection>> unflushed_;
  std::vector<std::shared_ptr<connection>> flushing_;
  // Results for other workers' connections, batched per home and posted once per request.
  std::vector<std::vector<std::pair<connection_id, sessions::home_message>>> remote_batches_;
};

}  // namespace swarmcoord::net
