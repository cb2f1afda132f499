// loadgen: command-line options (see main.cpp for what they do).
#pragma once

#include <cstdint>
#include <string>

namespace loadgen {

enum class proto { webtorrent, native };

struct options {
  std::string url = "ws://127.0.0.1:8000/";
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::string path;  // empty: / (webtorrent) or /v1/ws (native)
  unsigned connections = 2000;
  double duration = 20;
  double warmup = 5;
  proto protocol = proto::webtorrent;
  unsigned threads = 1;
  bool idle = false;
  double rate = 0;          // target server messages/s; 0: closed loop, as fast as it goes
  double open_rate = 2000;  // connections opened per second
  unsigned sources = 64;    // source addresses 127.0.0.1 .. 127.0.0.<sources>
  std::string metrics_url;
  int server_pid = 0;
  unsigned offers = 10;
  unsigned numwant = 10;
  unsigned swarms = 10000;
  double seeders = 0.25;
  unsigned sdp_bytes = 128;
  double gamma_shape = 0.2;
  double gamma_scale = 100;
  double timeout_s = 0;  // a request unanswered this long is given up (counted) and the next
                         // sent; 0: 30 s (webtorrent: every announce is answered) or 5 s (native:
                         // an offer to a neighbour that left meanwhile is never answered)
  std::uint64_t seed = 1;
  bool reconnect = true;
  bool spin = false;  // busy-poll instead of sleeping when idle
};

// Parses and checks the command line; prints the usage and exits on a bad one.
options parse_options(int argc, char** argv);

}  // namespace loadgen
