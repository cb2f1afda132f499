#include "server/net/runtime.hpp"

#include <algorithm>
#include <cerrno>
#include <random>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "server/net/http_routes.hpp"
#include "server/net/listener.hpp"
#include "server/net/session.hpp"

namespace swarmcoord::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
thread_local worker* this_thread_worker = nullptr;

// A database that exists but is not a MaxMind DB is a bad config value like any other.
sessions::address_budget budget_of(const config::config& cfg) {
  const auto& l = cfg.limits;
  return {l.http_sessions_per_address, l.connections_per_address, double(l.connects_per_second_per_address),
          l.connect_burst_per_address, l.swarms_per_address};
}

std::unique_ptr<locality::locator> make_locator(const config::config& cfg) {
  try {
    return std::make_unique<locality::locator>(cfg.locality.sites, cfg.locality.geoip_db, cfg.locality.asn_db);
  } catch (const std::runtime_error& e) {
    throw config::config_error(e.what());
  }
}
}

worker* runtime::current_worker() { return this_thread_worker; }

runtime::runtime(const config::config& cfg)
    : cfg_(cfg),
      routes_(std::make_unique<public_routes>(*this)),
      locator_(make_locator(cfg_)),
      address_limits_(budget_of(cfg_)),
      admission_(cfg_),
      budget_(std::make_shared<swarm::swarm_budget>(cfg_.limits.swarms)) {
  const unsigned n = std::clamp(cfg_.server.threads, 1u, swarm::max_workers);
  for (unsigned i = 0; i < n; ++i)
    workers_.push_back(
        std::make_unique<worker>(*this, i, n, cfg_.tracker, cfg_.mesh.planner, cfg_.mesh.replan_ms, budget_));
  if (!cfg_.server.tls_cert.empty()) {
    tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1);
    boost::system::error_code ec;
    tls_->use_certificate_chain_file(cfg_.server.tls_cert, ec);
    if (ec) throw std::runtime_error("server.tls_cert: cannot load " + cfg_.server.tls_cert + ": " + ec.message());
    tls_->use_private_key_file(cfg_.server.tls_key, asio::ssl::context::pem, ec);
    if (ec) throw std::runtime_error("server.tls_key: cannot load " + cfg_.server.tls_key + ": " + ec.message());
  }
}

runtime::~runtime() {
  stop();
  // The listeners' acceptors and backoff timers belong to the workers' io_contexts, which go
  // with workers_ (declared last, so destroyed first): drop the listeners before. Those still
  // held by a pending handler go with it, while their io_context shuts down.
  listeners_.clear();
}

unsigned runtime::shard_of(const protocol::binary_id& info_hash) const {
  return static_cast<unsigned>(protocol::binary_id_hash{}(info_hash) % workers_.size());
}

unsigned runtime::shard_of(const std::string& swarm_key) const {
  return static_cast<unsigned>(protocol::keyed_hash(swarm_key) % workers_.size());
}

void runtime::start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(cfg_.server.listen.host, ec);
  if (ec) throw std::runtime_error("server.listen: bad address " + cfg_.server.listen.host);
  tcp::endpoint at(address, cfg_.server.listen.port);
  if (at.port() != 0) {
    // SO_REUSEPORT would let a second instance share the port silently and split every swarm
    // between two processes; a plain bind first refuses that with "address in use".
    try {
      listener::bind(workers_[0]->io().get_executor(), at, false).close();
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("server.listen: cannot listen on " + cfg_.server.listen.to_string() + ": " +
                               e.code().message());
    }
  }
  for (auto& w : workers_) {
    tcp::acceptor acceptor(w->io());
    try {
      acceptor = listener::bind(w->io().get_executor(), at, true);
    } catch (const boost::system::system_error& e) {
      throw std::runtime_error("server.listen: cannot listen on " + cfg_.server.listen.to_string() +
                               ": " + e.code().message());
    }
    // With port 0 the first bind picks the port; the other workers share that one.
    at = acceptor.local_endpoint();
    worker* wp = w.get();
    listener::observer watch{
        [wp](int error) {
          using metrics::accept_error;
          const auto why = error == EMFILE || error == ENFILE      ? accept_error::out_of_descriptors
                           : error == ENOBUFS || error == ENOMEM ? accept_error::out_of_memory
                                                                 : accept_error::other;
          ++wp->net_counters().accept_errors[static_cast<std::size_t>(why)];
        },
        [wp] { ++wp->net_counters().connections_shed; }};
    auto l = std::make_shared<listener>(
        std::move(acceptor), [this, wp](tcp::socket&& socket) { start_public_session(std::move(socket), *wp, *this); },
        std::move(watch));
    listeners_.push_back(l);
  }
  public_endpoint_ = at;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    worker* w = workers_[i].get();
    auto l = listeners_[i];
    asio::post(w->io(), [w, l] {
      l->start();
      w->start_housekeeping();
    });
    threads_.emplace_back([w] {
      this_thread_worker = w;
      // A handler that throws is a bug; log it and keep the worker serving everyone else.
      for (;;) {
        try {
          w->io().run();
          break;
        } catch (const std::exception& e) {
          spdlog::error("worker {}: unhandled exception: {}", w->index(), e.what());
        }
      }
    });
  }
}

void runtime::stop() {
  stopped_ = true;
  for (auto& w : workers_) w->io().stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

runtime::admit_result runtime::admit(const swarm::ip_address& client) {
  auto n = open_connections_.fetch_add(1, std::memory_order_relaxed);
  if (n >= cfg_.server.max_connections) {
    open_connections_.fetch_sub(1, std::memory_order_relaxed);
    return admit_result::server_full;
  }
  if (!address_limits_.open_connection(client)) {
    open_connections_.fetch_sub(1, std::memory_order_relaxed);
    return admit_result::address_full;
  }
  return admit_result::admitted;
}

void runtime::release(const swarm::ip_address& client) {
  address_limits_.close_connection(client);
  open_connections_.fetch_sub(1, std::memory_order_relaxed);
}

bool runtime::admit_http() {
  if (http_sessions_.fetch_add(1, std::memory_order_relaxed) >= cfg_.server.max_http_sessions) {
    http_sessions_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void runtime::release_http() { http_sessions_.fetch_sub(1, std::memory_order_relaxed); }

void runtime::begin_drain() {
  if (draining_.exchange(true)) return;
  const auto window = std::chrono::milliseconds(cfg_.server.drain_seconds * 1000);
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    worker* w = workers_[i].get();
    auto l = listeners_[i];
    asio::post(w->io(), [w, l, window] {
      l->stop();
      // Close in batches spread over the window, so that clients reconnecting elsewhere do
      // not arrive at the other instances all at once.
      std::vector<connection_id> ids;
      w->for_each_connection([&](connection& c) { ids.push_back(c.id()); });
      std::shuffle(ids.begin(), ids.end(), std::mt19937(std::random_device{}()));
      const std::size_t slots = std::max<std::size_t>(1, std::min<std::size_t>(ids.size(), window.count() / 100 + 1));
      for (std::size_t s = 0; s < slots; ++s) {
        std::vector<connection_id> batch;
        for (std::size_t k = s; k < ids.size(); k += slots) batch.push_back(ids[k]);
        auto timer = std::make_shared<asio::steady_timer>(w->io(), window * s / slots);
        timer->async_wait([w, timer, batch = std::move(batch)](boost::system::error_code) {
          for (auto id : batch) w->close_going_away(id);
        });
      }
    });
  }
}

}  // namespace swarmcoord::net
