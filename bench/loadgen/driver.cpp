#include "driver.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include "connection.hpp"

namespace loadgen {

driver::~driver() = default;

unsigned driver::swarm_index() {
  // aquatic_ws_load_test: p = (min(x, 101) - 1) / 100, index = (p * (n - 1)) as usize, which
  // saturates negative values to 0.
  const double x = gamma(rng);
  const double p = (std::min(x, 101.0) - 1.0) / 100.0;
  if (p <= 0) return 0;
  return std::min<unsigned>(static_cast<unsigned>(p * (opt.swarms - 1)), opt.swarms - 1);
}

void driver::run() {
  conns_.reserve(conn_count_);
  open_more();
  if (paced()) {
    paced_at_ = steady::now();
    pace();
  }
  sweep();
  if (opt.spin) {
    // Never sleep in epoll: a sleeping (virtual) CPU takes a while to wake up, which would
    // count as latency. Costs the whole core; for latency runs.
    while (!io_.stopped()) io_.poll();
  } else {
    io_.run();
  }
}

void driver::start_load() {
  auto parked = std::move(parked_);
  parked_.clear();
  for (auto* c : parked) c->begin();
}

void driver::open_more() {
  // Every 10 ms, this thread's share of --open-rate.
  open_carry_ += opt.open_rate / opt.threads / 100.0;
  while (open_carry_ >= 1 && opened_ < conn_count_) {
    open_carry_ -= 1;
    conns_.push_back(std::make_unique<connection>(*this, first_conn_ + opened_));
    conns_.back()->start();
    ++opened_;
  }
  if (opened_ < conn_count_) {
    open_timer_.expires_after(std::chrono::milliseconds(10));
    open_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) open_more();
    });
  }
}

void driver::pace() {
  // Every millisecond: release requests at (rate / threads) / (responses per request).
  const auto now = steady::now();
  const double dt = std::chrono::duration<double>(now - paced_at_).count();
  paced_at_ = now;
  // Re-estimate responses per request from what this thread saw (smoothed).
  const std::uint64_t resp = st_.responses.get(), reqs = st_.sent_announce.get() + st_.sent_other.get();
  if (reqs - ratio_requests_ >= 100 && now - ratio_at_ >= std::chrono::milliseconds(100)) {
    const double r = static_cast<double>(resp - ratio_responses_) / static_cast<double>(reqs - ratio_requests_);
    per_request_ = 0.5 * per_request_ + 0.5 * std::max(r, 0.5);
    ratio_at_ = now;
    ratio_responses_ = resp;
    ratio_requests_ = reqs;
  }
  const double rate = opt.rate / opt.threads / per_request_;
  tokens_ = std::min(tokens_ + rate * dt, std::max(2.0, rate * 0.005));
  while (tokens_ >= 1 && !ready_.empty()) {
    const std::size_t pick = rng() % ready_.size();
    connection* c = ready_[pick];
    ready_[pick] = ready_.back();
    ready_.pop_back();
    if (c->release()) tokens_ -= 1;
  }
  pace_timer_.expires_after(std::chrono::milliseconds(1));
  pace_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) pace();
  });
}

void driver::sweep() {
  const std::uint64_t now = now_ns();
  const auto limit = static_cast<std::uint64_t>(opt.timeout_s * 1e9);
  for (auto& c : conns_) c->check_timeout(now, limit);
  sweep_timer_.expires_after(std::chrono::milliseconds(250));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) sweep();
  });
}

}  // namespace loadgen
