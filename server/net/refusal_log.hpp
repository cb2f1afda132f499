#pragma once
// Log lines for refusals that an attack can trigger thousands of times a second: at most one
// line per reason every 10 s, with how many were refused since the last line and one address
// that was. Metrics count every refusal; this is for the operator reading logs at night.
// Thread-safe (any worker may refuse).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>

#include <spdlog/spdlog.h>

#include "server/swarm/address.hpp"

namespace swarmcoord::net {

class refusal_log {
 public:
  explicit refusal_log(std::string_view what) : what_(what) {}

  // what_ describes the refusal, e.g. "connections over limits.connections_per_address".
  void note(const swarm::ip_address& from) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    const auto since = refused_.fetch_add(1, std::memory_order_relaxed) + 1;
    auto last = last_line_.load(std::memory_order_relaxed);
    if (now - last < std::chrono::steady_clock::duration(std::chrono::seconds(10)).count() && last != 0) return;
    if (!last_line_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;  // another thread logs
    refused_.fetch_sub(since, std::memory_order_relaxed);
    spdlog::warn("refused {} {} since the last such line, e.g. from {} (at most one line every 10 s)", since, what_,
                 from.to_string());
  }

 private:
  std::string_view what_;
  std::atomic<std::int64_t> last_line_{0};
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace swarmcoord::net
