#include "server/sessions/address_limits.hpp"

#include <algorithm>

#include "protocol/keyed_hash.hpp"

namespace swarmcoord::sessions {

swarm::ip_address address_key(const swarm::ip_address& a) {
  if (a.is_v4()) return a;
  swarm::ip_address k = a;
  std::fill(k.bytes.begin() + 8, k.bytes.end(), std::uint8_t{0});
  return k;
}

std::size_t address_limits::key_hash::operator()(const swarm::ip_address& a) const noexcept {
  // Keyed: a client with a large IPv6 range can't pick /64s that pile into one bucket.
  return static_cast<std::size_t>(
      protocol::keyed_hash(std::string_view(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size())));
}

template <class Fn>
auto address_limits::with_entry(const swarm::ip_address& a, Fn&& fn) {
  const auto key = address_key(a);
  auto& s = shards_[key_hash{}(key) % shard_count];
  std::lock_guard lock(s.m);
  auto [it, created] = s.entries.try_emplace(key);
  if (created) it->second.tokens = -1;  // marks "full, refilled whenever": see take_token
  return fn(it->second);
}

bool address_limits::take_token(entry& e, std::int64_t now_ms) const {
  const double burst = budget_.connect_burst;
  if (e.tokens < 0) e.tokens = burst;
  else e.tokens = std::min(burst, e.tokens + budget_.connects_per_second * double(now_ms - e.refilled_ms) / 1000.0);
  e.refilled_ms = now_ms;
  if (e.tokens < 1) return false;
  e.tokens -= 1;
  return true;
}

std::optional<limit> address_limits::accept(const swarm::ip_address& a, std::int64_t now_ms) {
  return with_entry(a, [&](entry& e) -> std::optional<limit> {
    // The slot first: a client at its HTTP cap spends no token on connections refused anyway.
    if (e.http_sessions >= budget_.http_sessions) return limit::http_sessions_per_address;
    if (!take_token(e, now_ms)) return limit::connect_rate_per_address;
    ++e.http_sessions;
    return std::nullopt;
  });
}

void address_limits::end_http(const swarm::ip_address& a) {
  with_entry(a, [](entry& e) { e.http_sessions -= e.http_sessions > 0; });
}

bool address_limits::take_connect_token(const swarm::ip_address& a, std::int64_t now_ms) {
  return with_entry(a, [&](entry& e) { return take_token(e, now_ms); });
}

bool address_limits::open_connection(const swarm::ip_address& a) {
  return with_entry(a, [&](entry& e) {
    if (e.connections >= budget_.connections) return false;
    ++e.connections;
    return true;
  });
}

void address_limits::close_connection(const swarm::ip_address& a) {
  with_entry(a, [](entry& e) { e.connections -= e.connections > 0; });
}

bool address_limits::add_swarm(const swarm::ip_address& a) {
  return with_entry(a, [&](entry& e) {
    if (e.swarms >= budget_.swarms) return false;
    ++e.swarms;
    return true;
  });
}

void address_limits::remove_swarms(const swarm::ip_address& a, std::uint32_t n) {
  if (n == 0) return;
  with_entry(a, [n](entry& e) { e.swarms -= std::min(e.swarms, n); });
}

void address_limits::sweep(std::int64_t now_ms) {
  const double burst = budget_.connect_burst;
  for (auto& s : shards_) {
    std::lock_guard lock(s.m);
    std::erase_if(s.entries, [&](const auto& kv) {
      const entry& e = kv.second;
      if (e.http_sessions || e.connections || e.swarms) return false;
      return e.tokens < 0 || e.tokens + budget_.connects_per_second * double(now_ms - e.refilled_ms) / 1000.0 >= burst;
    });
  }
}

address_limits::usage address_limits::of(const swarm::ip_address& a) {
  const auto key = address_key(a);
  auto& s = shards_[key_hash{}(key) % shard_count];
  std::lock_guard lock(s.m);
  auto it = s.entries.find(key);
  return it == s.entries.end() ? usage{} : usage{it->second.http_sessions, it->second.connections, it->second.swarms};
}

std::size_t address_limits::tracked() {
  std::size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard lock(s.m);
    n += s.entries.size();
  }
  return n;
}

}  // namespace swarmcoord::sessions
