#pragma once
// The per-connection message rate (server.max_messages_per_second).
// Not thread-safe: one per connection, on its home thread.
#include <algorithm>
#include <chrono>
#include <cstdint>

namespace swarmcoord::net {

// server.max_messages_per_second as a token bucket as deep as one second of it.
class token_bucket {
 public:
  using clock = std::chrono::steady_clock;
  explicit token_bucket(double rate, clock::time_point now = clock::now()) : rate_(rate), tokens_(rate), refilled_(now) {}

  // Takes a token; returns how long to wait before the next one may go (zero: go on). Once
  // empty, the wait covers 20 ms worth of messages, so that a throttled client is woken up
  // for a batch, not for every message.
  std::chrono::nanoseconds take(clock::time_point now = clock::now()) {
    tokens_ = std::min(rate_, tokens_ + rate_ * std::chrono::duration<double>(now - refilled_).count());
    refilled_ = now;
    tokens_ -= 1;
    if (tokens_ >= 0) return {};
    const double batch = std::max(1.0, rate_ / 50);
    // A nanosecond over: a wait cut short by rounding leaves the batch a hair short of its
    // last token, and the client is woken again after one message.
    return std::chrono::nanoseconds(static_cast<std::int64_t>((batch - tokens_) / rate_ * 1e9) + 1);
  }

 private:
  double rate_;
  double tokens_;
  clock::time_point refilled_;
};

}  // namespace swarmcoord::net
