// The per-connection message rate (net/token_bucket.hpp), with explicit times.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "server/net/token_bucket.hpp"

namespace {

using swarmcoord::net::token_bucket;
using namespace std::chrono_literals;
using clock_type = token_bucket::clock;

const clock_type::time_point start = clock_type::time_point{} + 1000s;

// Takes tokens at `now` until one asks for a wait; returns how many went without one, and the wait.
std::pair<int, std::chrono::nanoseconds> take_until_wait(token_bucket& bucket, clock_type::time_point now,
                                                         int at_most = 1'000'000) {
  for (int taken = 0; taken < at_most; ++taken)
    if (auto wait = bucket.take(now); wait.count() > 0) return {taken, wait};
  return {at_most, {}};
}

TEST_CASE("token bucket: a second's worth at once, then a wait for a batch", "[token_bucket]") {
  for (int rate : {1, 7, 75, 100, 200, 333, 1000, 3000, 20000}) {
    INFO("rate " << rate);
    token_bucket bucket(rate, start);
    // A burst of `rate` messages goes; the next one is taken, and asks for a pause.
    auto [taken, wait] = take_until_wait(bucket, start);
    CHECK(taken == rate);
    // The pause pays back the message over the limit and one batch: max(1, rate/50) messages.
    const double batch = std::max(1.0, rate / 50.0);
    const double expected_s = (batch + 1) / rate;
    CHECK(std::chrono::duration<double>(wait).count() >= expected_s);
    CHECK(std::chrono::duration<double>(wait).count() < expected_s + 1e-6);
    // After it, the whole batch goes without another wait (not one message per wake-up).
    const auto later = start + wait;
    auto [batch_taken, next_wait] = take_until_wait(bucket, later);
    CHECK(batch_taken == static_cast<int>(std::floor(batch)));
    CHECK(next_wait.count() > 0);
  }
}

TEST_CASE("token bucket: refills with time, up to one second's worth", "[token_bucket]") {
  token_bucket bucket(100, start);
  CHECK(take_until_wait(bucket, start).first == 100);
  // Half a second brings half the rate back (the message that asked for a wait is paid first).
  CHECK(take_until_wait(bucket, start + 500ms).first == 49);
  CHECK(take_until_wait(bucket, start + 600ms).first == 9);
  // A long silence refills no more than the depth of one second.
  CHECK(take_until_wait(bucket, start + 60s).first == 100);
  // Time that does not pass refills nothing.
  CHECK(take_until_wait(bucket, start + 60s).first == 0);
}

TEST_CASE("token bucket: a steady rate under the limit never waits", "[token_bucket]") {
  token_bucket bucket(50, start);
  auto now = start;
  for (int i = 0; i < 1000; ++i) {
    now += 25ms;  // 40 a second
    REQUIRE(bucket.take(now).count() == 0);
  }
}

}  // namespace
