#include <catch2/catch.hpp>

#include "server/sessions/address_limits.hpp"

using namespace swarmcoord;
using sessions::address_limits;
using sessions::limit;

namespace {
swarm::ip_address ip(const char* text) { return *swarm::ip_address::parse(text); }
}  // namespace

TEST_CASE("address limits: HTTP slots per address, given back when the HTTP phase ends") {
  address_limits limits({.http_sessions = 3, .connections = 10, .connects_per_second = 1000, .connect_burst = 1000});
  const auto a = ip("192.0.2.1");
  for (int i = 0; i < 3; ++i) REQUIRE_FALSE(limits.accept(a, 0));
  REQUIRE(limits.accept(a, 0) == limit::http_sessions_per_address);
  // Another address is not affected by a's use.
  REQUIRE_FALSE(limits.accept(ip("192.0.2.2"), 0));
  limits.end_http(a);
  REQUIRE_FALSE(limits.accept(a, 0));
  REQUIRE(limits.of(a).http_sessions == 3);
}

TEST_CASE("address limits: new connections per second, a bucket as deep as the burst") {
  address_limits limits({.http_sessions = 1000, .connects_per_second = 10, .connect_burst = 5});
  const auto a = ip("198.51.100.7");
  int accepted = 0;
  for (int i = 0; i < 20; ++i) {
    if (!limits.accept(a, 1000)) ++accepted, limits.end_http(a);
  }
  REQUIRE(accepted == 5);
  REQUIRE(limits.accept(a, 1000) == limit::connect_rate_per_address);
  // 10 per second refill: after 300 ms, three more.
  accepted = 0;
  for (int i = 0; i < 10; ++i)
    if (!limits.accept(a, 1300)) ++accepted, limits.end_http(a);
  REQUIRE(accepted == 3);
  // Connecting and closing at once does not reset the bucket: the entry outlives its counts
  // until the bucket is full again, and only then does sweep() drop it.
  limits.sweep(1300);
  REQUIRE(limits.tracked() == 1);
  REQUIRE(limits.accept(a, 1300) == limit::connect_rate_per_address);
  limits.sweep(1300 + 600);
  REQUIRE(limits.tracked() == 0);
}

TEST_CASE("address limits: a proxied client spends rate tokens under its forwarded address") {
  address_limits limits({.connects_per_second = 1, .connect_burst = 2});
  const auto a = ip("203.0.113.9");
  REQUIRE(limits.take_connect_token(a, 0));
  REQUIRE(limits.take_connect_token(a, 0));
  REQUIRE_FALSE(limits.take_connect_token(a, 0));
  REQUIRE(limits.take_connect_token(a, 1000));
}

TEST_CASE("address limits: WebSocket connections and swarms per address") {
  address_limits limits({.connections = 2, .swarms = 3});
  const auto a = ip("192.0.2.1");
  REQUIRE(limits.open_connection(a));
  REQUIRE(limits.open_connection(a));
  REQUIRE_FALSE(limits.open_connection(a));
  limits.close_connection(a);
  REQUIRE(limits.open_connection(a));
  for (int i = 0; i < 3; ++i) REQUIRE(limits.add_swarm(a));
  REQUIRE_FALSE(limits.add_swarm(a));
  limits.remove_swarms(a, 2);
  REQUIRE(limits.of(a).swarms == 1);
  // Removing more than held (a late release) can't wrap the count.
  limits.remove_swarms(a, 5);
  REQUIRE(limits.of(a).swarms == 0);
  // An entry with something open is never swept.
  limits.sweep(1'000'000);
  REQUIRE(limits.of(a).connections == 2);
}

TEST_CASE("address limits: IPv6 counts per /64, IPv4 per address") {
  address_limits limits({.connections = 1});
  REQUIRE(limits.open_connection(ip("2001:db8:1:2::1")));
  REQUIRE_FALSE(limits.open_connection(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
  REQUIRE(limits.open_connection(ip("2001:db8:1:3::1")));
  REQUIRE(limits.open_connection(ip("10.0.0.1")));
  REQUIRE(limits.open_connection(ip("10.0.0.2")));
  REQUIRE(sessions::address_key(ip("2001:db8:1:2:aaaa::1")) == ip("2001:db8:1:2::"));
}
