// loadgen: counters and latency histograms of the driver threads, the snapshots the main thread
// takes of them, and what it reads from outside: the daemon's /metrics and CPU times.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loadgen {

// Log-linear histogram of nanoseconds: 32 sub-buckets per power of two (about 3% resolution).
class histogram {
 public:
  void record(std::uint64_t v) {
    ++counts_[index(v)];
    ++n_;
    max_ = std::max(max_, v);
  }
  void merge(const histogram& o) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    n_ += o.n_;
    max_ = std::max(max_, o.max_);
  }
  std::uint64_t count() const { return n_; }
  std::uint64_t max() const { return max_; }
  // The value below which a fraction q of the samples lie (bucket midpoint).
  std::uint64_t quantile(double q) const {
    if (n_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(midpoint(i), max_);
    }
    return max_;
  }

 private:
  static constexpr unsigned sub_bits = 5;
  static constexpr std::uint64_t sub = 1u << sub_bits;
  static std::size_t index(std::uint64_t v) {
    if (v < 2 * sub) return static_cast<std::size_t>(v);
    const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    const unsigned shift = msb - sub_bits;
    return (shift + 1) * sub + static_cast<std::size_t>((v >> shift) - sub);
  }
  static std::uint64_t midpoint(std::size_t i) {
    if (i < 2 * sub) return i;
    const unsigned shift = static_cast<unsigned>(i / sub) - 1;
    const std::uint64_t low = (i % sub + sub) << shift;
    return low + (std::uint64_t{1} << shift) / 2;
  }
  std::array<std::uint64_t, 60 * sub> counts_{};
  std::uint64_t n_ = 0;
  std::uint64_t max_ = 0;
};

// A counter written by one thread only and read by the main thread: relaxed atomics cost a
// plain load and store on x86.
struct counter {
  std::atomic<std::uint64_t> v{0};
  void inc(std::uint64_t by = 1) { v.store(v.load(std::memory_order_relaxed) + by, std::memory_order_relaxed); }
  std::uint64_t get() const { return v.load(std::memory_order_relaxed); }
};


struct thread_stats {
  // Counted always; the window figures are differences of snapshots taken by the main thread.
  counter responses, r_announce, r_offer, r_answer, r_error, r_other;
  counter sent_announce, sent_answer, sent_other;
  counter connected, connect_failed, handshake_failed, closed, reconnects, timeouts, parse_errors, write_errors;
  counter open_now, idle_ready;
  // Recorded only while phase == measure; read after the thread stopped.
  histogram announce_lat, relay_lat;
};

struct snapshot {
  std::uint64_t responses = 0, r_announce = 0, r_offer = 0, r_answer = 0, r_error = 0, r_other = 0;
  std::uint64_t sent_announce = 0, sent_answer = 0, sent_other = 0;
  std::uint64_t timeouts = 0, closed = 0, parse_errors = 0, write_errors = 0;
  snapshot& operator+=(const thread_stats& s) {
    responses += s.responses.get();
    r_announce += s.r_announce.get();
    r_offer += s.r_offer.get();
    r_answer += s.r_answer.get();
    r_error += s.r_error.get();
    r_other += s.r_other.get();
    sent_announce += s.sent_announce.get();
    sent_answer += s.sent_answer.get();
    sent_other += s.sent_other.get();
    timeouts += s.timeouts.get();
    closed += s.closed.get();
    parse_errors += s.parse_errors.get();
    write_errors += s.write_errors.get();
    return *this;
  }
  snapshot operator-(const snapshot& o) const {
    snapshot d;
    d.responses = responses - o.responses;
    d.r_announce = r_announce - o.r_announce;
    d.r_offer = r_offer - o.r_offer;
    d.r_answer = r_answer - o.r_answer;
    d.r_error = r_error - o.r_error;
    d.r_other = r_other - o.r_other;
    d.sent_announce = sent_announce - o.sent_announce;
    d.sent_answer = sent_answer - o.sent_answer;
    d.sent_other = sent_other - o.sent_other;
    d.timeouts = timeouts - o.timeouts;
    d.closed = closed - o.closed;
    d.parse_errors = parse_errors - o.parse_errors;
    d.write_errors = write_errors - o.write_errors;
    return d;
  }
};

// ------------------------------------------------------------------ outside the process

struct scrape_result {
  bool ok = false;
  std::string error;
  double sent_total = 0;  // swarmcoord_messages_sent_total, summed over labels
  std::vector<std::pair<std::string, double>> others;
};

// Metrics whose deltas tell what the daemon did besides answering (summed over labels).
inline constexpr std::array<std::string_view, 10> watched = {
    "swarmcoord_messages_received_total", "swarmcoord_offers_relayed_total",
    "swarmcoord_offers_unrelayed_total",  "swarmcoord_answers_relayed_total",
    "swarmcoord_answers_dropped_total",   "swarmcoord_protocol_errors_total",
    "swarmcoord_reads_throttled_total",   "swarmcoord_slow_consumers_closed_total",
    "swarmcoord_deliveries_dropped_total", "swarmcoord_connections_rejected_total"};

scrape_result scrape(const std::string& url);
double process_cpu_seconds(int pid);  // negative when unreadable
double machine_cpu_seconds();         // negative when unreadable
double own_cpu_seconds();
std::string with_commas(std::uint64_t v);

}  // namespace loadgen
