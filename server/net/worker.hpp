#pragma once
// One worker: an io_context run by one thread, the connections it accepted, and its shard of
// the WebTorrent swarms. Swarm shards are chosen by info_hash, so a message may be handled by
// another worker than the one owning its connection: the runtime posts it there, and the
// results are posted back to the owners of the receiving connections.
// Thread-safety: every member is touched only on this worker's thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "server/net/connection.hpp"
#include "server/swarm/tracker.hpp"

namespace swarmcoord::net {

class runtime;

inline swarm::time_ms monotonic_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

class worker {
 public:
  worker(runtime& rt, unsigned index, unsigned worker_count,
         const swarm::tracker_config& tracker_config);

  boost::asio::io_context& io() { return io_; }
  unsigned index() const { return index_; }
  swarm::tracker& tracker() { return tracker_; }
  metrics::counters& counters() { return counters_; }

  connection_id register_connection(connection* c);
  void unregister_connection(connection_id id);
  void for_each_connection(const std::function<void(connection&)>& fn);
  void close_going_away(connection_id id);
  std::size_t connection_count() const { return connections_.size(); }

  // Hands a message to a connection on any worker; counts it lost if the connection is gone.
  void deliver(connection_id to, outbound message);

  // Shard side: run the tracker on one decoded message, then route what it produced.
  void handle_announce(connection_id from, const swarm::ip_address& address,
                       swarm::wt::announce&& a);
  void handle_answer(connection_id from, swarm::wt::answer&& a);

  void start_housekeeping();
  void stop_housekeeping();

  // Counters with this shard's domain figures folded in; read on this thread.
  metrics::counters snapshot() const;

 private:
  void route(std::vector<swarm::outgoing>& out);
  void schedule_expiry();

  runtime& runtime_;
  unsigned index_;
  boost::asio::io_context io_{1};
  swarm::tracker tracker_;
  metrics::counters counters_;
  std::unordered_map<connection_id, connection*> connections_;
  std::uint64_t next_sequence_ = 1;
  boost::asio::steady_timer expiry_timer_{io_};
  std::vector<swarm::outgoing> scratch_;
  // Deliveries for other workers, batched per target and posted once per handled message.
  std::vector<std::vector<std::pair<connection_id, outbound>>> remote_batches_;
};

}  // namespace swarmcoord::net
