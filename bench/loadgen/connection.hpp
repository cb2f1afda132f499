// loadgen: one client connection (the WebSocket client in connection.cpp, the workloads in
// workload.cpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "driver.hpp"

namespace loadgen {

inline std::atomic<int> error_lines_left{8};  // a few server error messages are worth showing

// One client connection: TCP, the HTTP upgrade, then WebSocket frames done by hand. Frames out
// are masked (client to server) and appended to one buffer that goes out in a single write
// however many messages were produced meanwhile; reads fill the connection's buffer as far as
// the socket allows and every complete frame in it is handled at once. (Beast's websocket
// stream reads through a 1.5 KB buffer, often with an extra read that finds nothing, and writes
// each message on its own: on this VM, where every syscall is costly, that made the loadgen
// about as expensive per message as the server it measures.)
class connection {
 public:
  connection(driver& d, unsigned global_index)
      : d_(d), g_(d.g), opt_(d.opt), index_(global_index), sock_(d.io()) {
    // A fixed-looking client prefix and 12 random characters: 20 ASCII bytes.
    peer_id_ = "-LG0001-";
    for (int i = 0; i < 12; ++i) peer_id_ += alnum[d_.rng() % 62];
    offer_prefix_ = static_cast<std::uint32_t>(d_.rng());
    seeder_native_ = d_.unit(d_.rng) < opt_.seeders;
  }

  void start();
  void check_timeout(std::uint64_t now, std::uint64_t limit_ns);
  bool release();
  bool open() const { return open_; }
  void begin();

 private:
  thread_stats& st() { return d_.stats(); }

  // The WebSocket client (connection.cpp).
  void on_connected();
  std::size_t on_handshake_bytes();
  void wait_readable();
  void on_readable();
  std::size_t parse_frames(const char* p, std::size_t n);
  void on_message(std::string_view m);
  void send_frame(std::string_view payload, unsigned opcode = 0x1);
  void send_text(std::string_view text) { send_frame(text); }
  void flush();
  void fail();
  void retry_later();

  // The request loop and the workloads (workload.cpp).
  void start_loop();
  void next();
  void send_request();
  void mark_outstanding() {
    outstanding_ = true;
    outstanding_since_ = now_ns();
  }
  void send_announce();
  void send_idle_announce();
  void on_webtorrent(std::string_view m);
  const std::string& url() const { return g_.swarm_urls[swarm_]; }
  void native_join();
  void native_leave();
  void native_have();
  void native_offer(std::uint64_t to);
  void native_action();
  bool current_swarm(std::string_view m) const;
  void on_native(std::string_view m);

  driver& d_;
  global_state& g_;
  const options& opt_;
  unsigned index_;
  tcp::socket sock_;
  std::vector<char> rbuf_;  // read buffer
  std::size_t rlen_ = 0;
  std::string fragments_;  // a fragmented message so far
  std::string out_;        // frames waiting for the write in flight
  std::string wbuf_;       // frames being written
  std::unique_ptr<asio::steady_timer> timer_;
  std::string peer_id_;
  std::uint32_t offer_prefix_ = 0;
  std::uint64_t offer_seq_ = 0;
  std::uint64_t outstanding_since_ = 0;
  std::uint64_t connecting_since_ = 0;
  int ops_ = 0;
  bool connecting_ = false;
  bool open_ = false;
  bool ever_open_ = false;
  bool closed_ = false;
  bool writing_ = false;
  bool batching_ = false;
  bool outstanding_ = false;
  bool idle_done_ = false;
  bool retry_scheduled_ = false;
  // native
  bool seeder_native_ = false;
  bool joined_ = false;
  bool awaiting_neighbors_ = false;
  unsigned swarm_ = 0;
  std::vector<std::uint64_t> neighbors_;
};

}  // namespace loadgen
