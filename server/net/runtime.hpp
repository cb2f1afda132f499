#pragma once
// The shared-nothing runtime: N workers, each an io_context on its own thread with its own
// SO_REUSEPORT acceptor on the public port. Swarms are sharded to workers by info_hash; work
// for another worker's shard is posted to it, never shared under a lock. The admin listener and
// signal handling live on a separate control io_context (see main.cpp), which asks workers for
// figures through gather().
// Thread-safety: members are set up before start() and read-only after, except the atomics.
#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>

#include "server/config/config.hpp"
#include "server/locality/locator.hpp"
#include "server/net/worker.hpp"
#include "server/sessions/address_limits.hpp"
#include "server/sessions/admission.hpp"

namespace swarmcoord::net {

class listener;
class http_routes;

class runtime {
 public:
  explicit runtime(const config::config& cfg);
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  // Binds the public port on every worker and starts their threads. Throws std::runtime_error
  // with a one-line reason (address in use, bad TLS files, …).
  void start();
  // Stops every worker's io_context and joins the threads. Sessions still open are destroyed
  // afterwards with their io_context; stopped() tells them not to reach out any more.
  void stop();
  bool stopped() const { return stopped_.load(std::memory_order_relaxed); }

  boost::asio::ip::tcp::endpoint public_endpoint() const { return public_endpoint_; }
  const config::config& cfg() const { return cfg_; }
  unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }
  worker& at(unsigned i) { return *workers_[i]; }
  unsigned shard_of(const protocol::binary_id& info_hash) const;
  unsigned shard_of(const std::string& swarm_key) const;
  const locality::locator& locator() const { return *locator_; }
  boost::asio::ssl::context* tls() { return tls_.get(); }
  http_routes& routes() { return *routes_; }

  // Runs fn on worker `target`: at once when the caller is that worker's thread, else posted.
  template <class Fn>
  void run_on(unsigned target, Fn&& fn) {
    if (current_worker() == workers_[target].get()) fn();
    else boost::asio::post(workers_[target]->io(), std::forward<Fn>(fn));
  }

  // Runs compute(worker&) on every worker (or those of the bit mask `only`), then
  // done(std::vector<Part>) on origin; the parts of workers not asked stay empty.
  template <class Part, class Compute, class Done>
  void gather(boost::asio::any_io_executor origin, Compute compute, Done done, std::uint64_t only = ~std::uint64_t{0}) {
    struct state {
      std::vector<Part> parts;
      std::size_t remaining;
      Done done;
    };
    std::size_t asked = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i) asked += (only >> i) & 1;
    auto st = std::make_shared<state>(state{std::vector<Part>(workers_.size()), asked, std::move(done)});
    if (asked == 0) {
      boost::asio::post(origin, [st]() mutable { st->done(std::move(st->parts)); });
      return;
    }
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!((only >> i) & 1)) continue;
      boost::asio::post(workers_[i]->io(), [this, i, st, origin, compute]() mutable {
        Part part = compute(*workers_[i]);
        // The state travels on (moved, not copied), so that done and what it holds are
        // destroyed on the origin's thread, never on a worker's.
        boost::asio::post(origin, [i, st = std::move(st), part = std::move(part)]() mutable {
          st->parts[i] = std::move(part);
          if (--st->remaining == 0) st->done(std::move(st->parts));
        });
      });
    }
  }

  // Draining: readiness goes false, acceptors close, connections are closed with 1001 spread
  // over server.drain_seconds.
  void begin_drain();
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  std::size_t open_connections() const { return open_connections_.load(std::memory_order_relaxed); }

  // Admission of a new WebSocket connection from `client` under server.max_connections and
  // limits.connections_per_address; release(client) on close.
  enum class admit_result { admitted, server_full, address_full };
  admit_result admit(const swarm::ip_address& client);
  void release(const swarm::ip_address& client);
  // Plain HTTP connections on the public port (health checks, upgrades in progress) under
  // server.max_http_sessions, so that half-sent requests can't use up file descriptors.
  bool admit_http();
  void release_http();

  static worker* current_worker();

  sessions::address_limits& address_limits() { return address_limits_; }
  const sessions::admission& admission() const { return admission_; }

 private:
  config::config cfg_;
  std::vector<std::shared_ptr<listener>> listeners_;
  std::vector<std::thread> threads_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::unique_ptr<http_routes> routes_;
  std::unique_ptr<locality::locator> locator_;
  boost::asio::ip::tcp::endpoint public_endpoint_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<std::size_t> open_connections_{0};
  std::atomic<std::size_t> http_sessions_{0};
  sessions::address_limits address_limits_;
  sessions::admission admission_;
  // The swarm caps of every worker's tracker and mesh (tracker.max_swarms, limits.max_swarms,
  // limits.max_swarm_memory_mb).
  std::shared_ptr<swarm::swarm_budget> budget_;
  // Last, so that workers (and the sessions their io_contexts still own) go first.
  std::vector<std::unique_ptr<worker>> workers_;
};

}  // namespace swarmcoord::net
