// loadgen: the state all threads share, and the per-thread driver: one io_context with its share
// of the connections, opening them at --open-rate, pacing requests (--rate) and giving up on
// requests that took too long.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common.hpp"
#include "options.hpp"
#include "stats.hpp"

namespace loadgen {

enum phase : int { ramp = 0, warm = 1, measure = 2, done = 3 };

struct global_state {
  options opt;
  std::vector<std::string> info_hashes;  // 20 ASCII characters each
  std::vector<std::string> swarm_urls;   // native
  std::atomic<int> phase{ramp};
  std::atomic<bool> stop{false};
  // The load starts once every connection is open: a saturated server accepts new
  // connections slowly, so connections opened into running load may never get in.
  std::atomic<bool> started{false};
  std::vector<asio::ip::address_v4> sources;
  tcp::endpoint server;
  std::string host_header;
};

class connection;

class driver {
 public:
  driver(global_state& g, unsigned index, unsigned first_conn, unsigned conn_count);  // workload.cpp
  ~driver();
  void run();
  thread_stats& stats() { return st_; }
  asio::io_context& io() { return io_; }

  global_state& g;
  const options& opt;
  std::mt19937_64 rng;
  std::gamma_distribution<double> gamma;
  std::uniform_real_distribution<double> unit{0.0, 1.0};

  // WebTorrent templates: announce (leecher, seeder) and answer, with patch offsets.
  struct announce_template {
    std::string text;
    std::size_t info_hash = 0, peer_id = 0;
    std::vector<std::size_t> offer_ids, stamps;
  };
  std::array<announce_template, 2> announce_tpl;  // [0] leecher, [1] seeder
  std::string answer_tpl;
  std::size_t ans_info_hash = 0, ans_peer_id = 0, ans_to_peer_id = 0, ans_offer_id = 0, ans_stamp = 0;
  std::string idle_tpl;  // announce without offers
  std::size_t idle_info_hash = 0, idle_peer_id = 0;
  // Native: the SDP body (with a stamp slot) of signal offers and answers.
  std::string native_offer_sdp, native_answer_sdp;
  std::size_t native_offer_stamp = 0, native_answer_stamp = 0;

  std::string scratch;  // the message being built
  std::uint64_t mask_state = 0x9E3779B97F4A7C15ull;
  std::uint32_t mask_key() {  // xorshift64: masking keys need to vary, not to be secret here
    mask_state ^= mask_state << 13;
    mask_state ^= mask_state >> 7;
    mask_state ^= mask_state << 17;
    return static_cast<std::uint32_t>(mask_state >> 16);
  }

  unsigned swarm_index();  // aquatic's Gamma mapping onto [0, swarms)
  bool measuring() const { return g.phase.load(std::memory_order_relaxed) == measure; }
  bool paced() const { return opt.rate > 0 && !opt.idle; }
  void ready(connection* c) { ready_.push_back(c); }
  void park(connection* c) { parked_.push_back(c); }
  void start_load();  // on this thread: every parked connection begins

 private:
  void open_more();
  void pace();
  void sweep();

  asio::io_context io_{1};
  unsigned index_;
  unsigned first_conn_;
  unsigned conn_count_;
  unsigned opened_ = 0;
  double open_carry_ = 1;
  thread_stats st_;
  std::vector<std::unique_ptr<connection>> conns_;
  asio::steady_timer open_timer_{io_};
  asio::steady_timer pace_timer_{io_};
  asio::steady_timer sweep_timer_{io_};
  // Pacing (--rate): requests are released from ready_ at rate / (responses per request).
  std::vector<connection*> ready_;
  std::vector<connection*> parked_;  // open, waiting for the load to start
  double tokens_ = 0;
  steady::time_point paced_at_;
  double per_request_ = 1;  // responses per request, estimated as the run goes
  std::uint64_t ratio_responses_ = 0, ratio_requests_ = 0;
  steady::time_point ratio_at_;
};

}  // namespace loadgen
