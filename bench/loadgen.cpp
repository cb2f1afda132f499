// loadgen: a load generator for swarmcoord and any WebTorrent WebSocket tracker.
//
//   loadgen --url ws://127.0.0.1:8000/ [--connections 2000] [--duration 20] [--warmup 5]
//           [--protocol webtorrent|native] [--threads 1] [--rate R] [--idle]
//           [--metrics http://127.0.0.1:9100/metrics] [--server-pid PID]   (--help: all options)
//
// WebTorrent workload (modelled on aquatic_ws's load test): N connections, opened gradually
// over 127.0.0.x source addresses, one peer_id each. Every announce goes to one of 10,000
// info_hashes drawn from aquatic's Gamma(0.2, 100) mapping (about 43% of announces hit the
// first swarm, the rest fall off steeply), carries 10 offers whose SDP (~128 characters)
// holds the send time, and numwant 10; 25% are seeders (left 0, event completed), the rest
// leechers (left 50, event started). Every offer received is answered at once on the socket
// it came in on (to the offering peer, with its offer_id), the answer SDP carrying the
// offer's send time back, so that the offerer measures offer -> relayed answer when it
// arrives. Closed loop: each connection has at most one announce outstanding; its response
// (or an error) releases the next one. With --rate R the announces are paced instead so that
// the server sends about R messages/s in all (for latency at a given load).
//
// Native workload (--protocol native, path /v1/ws): hello, join of a Gamma-drawn swarm URL
// (4 MiB in 64 KiB blocks; 25% of the connections join as seeds with "all"), and once its
// `neighbors` has come a mix: 60% a signal offer to a neighbour (answered by the neighbour,
// like WebTorrent offers), 20% (leechers) a have of a few blocks followed by an offer, 20%
// leave + join of another swarm; without neighbours, leave + join. One request (join or
// signal offer) outstanding per connection; join -> joined is reported as the "announce"
// latency, offer -> answer as the relay latency.
//
// A response is every message the server sends. The measurement window starts after all
// connections are open and --warmup seconds have passed, and lasts --duration seconds. With
// --metrics, the daemon's admin /metrics is scraped at both ends of the window and the delta
// of swarmcoord_messages_sent_total (summed over labels) printed next to our own count.
// --idle: each connection announces once (no offers; native: hello + join), then all are held
// open: `IDLE_READY ...` is printed once every connection has its reply, and the process holds
// them for --duration seconds or until SIGTERM/SIGINT (for memory measurement).
//
// Output: a human summary on stdout, then one machine-readable line
//   RESULT responses=.. seconds=.. rps=.. announce_p50_us=.. announce_p99_us=.. relay_p50_us=..
//          relay_p99_us=.. [more key=value pairs]
// --spin busy-polls instead of sleeping in epoll (a sleeping CPU of a VM can take milliseconds
// to wake up; for latency runs). Default: one thread; --threads N splits the connections.
//
// I/O: Asio, with the WebSocket framing done here (see `connection`): no compression, frames
// masked with a cheap PRNG, every message prebuilt from a template and patched in place.
//
// Exit status: 0, or 1 when no connection could be opened or nothing was received.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

// ------------------------------------------------------------------ options

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

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: loadgen --url ws://HOST:PORT[/PATH] [options]\n"
               "  --connections N      connections to open (default 2000)\n"
               "  --duration S         measured seconds (default 20); with --idle: how long to hold\n"
               "  --warmup S           seconds of load after all connections are open, not measured (default 5)\n"
               "  --protocol P         webtorrent (default) or native\n"
               "  --threads N          loadgen threads (default 1)\n"
               "  --rate R             pace requests so that the server sends about R messages/s (default: closed loop, max)\n"
               "  --idle               announce once per connection, then hold the connections idle\n"
               "  --metrics URL        admin /metrics of a swarmcoord, scraped before and after the window\n"
               "  --server-pid PID     report the server's CPU use over the window (from /proc)\n"
               "  --open-rate N        connections opened per second (default 2000)\n"
               "  --sources N          spread source addresses over 127.0.0.1..127.0.0.N (default 64)\n"
               "  --offers N           offers per announce (default 10); --numwant N (default 10)\n"
               "  --swarms N           info_hashes / swarm URLs (default 10000)\n"
               "  --seeders F          fraction of seeder announces / seed joins (default 0.25)\n"
               "  --sdp-bytes N        SDP length (default 128)\n"
               "  --timeout S          give up on a request after S seconds (default 30; native 5)\n"
               "  --no-reconnect       do not reopen connections the server closed\n"
               "  --spin               busy-poll instead of sleeping (latency runs: no wake-up delay on our side)\n"
               "  --seed N             random seed (default 1)\n");
  std::exit(code);
}

options parse_options(int argc, char** argv) {
  options o;
  std::string path_override;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "loadgen: %s needs a value\n", argv[i]);
        usage(2);
      }
      return argv[++i];
    };
    auto number = [&]() -> double {
      std::string v = value();
      char* end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || d < 0) {
        std::fprintf(stderr, "loadgen: %s: not a non-negative number: %s\n", argv[i - 1], v.c_str());
        usage(2);
      }
      return d;
    };
    if (a == "--help" || a == "-h") usage(0);
    else if (a == "--url") o.url = value();
    else if (a == "--connections") o.connections = static_cast<unsigned>(number());
    else if (a == "--duration") o.duration = number();
    else if (a == "--warmup") o.warmup = number();
    else if (a == "--protocol") {
      std::string p = value();
      if (p == "webtorrent" || p == "wt") o.protocol = proto::webtorrent;
      else if (p == "native") o.protocol = proto::native;
      else {
        std::fprintf(stderr, "loadgen: --protocol: webtorrent or native, not %s\n", p.c_str());
        usage(2);
      }
    } else if (a == "--threads") o.threads = std::max(1u, static_cast<unsigned>(number()));
    else if (a == "--rate") o.rate = number();
    else if (a == "--idle") o.idle = true;
    else if (a == "--metrics") o.metrics_url = value();
    else if (a == "--server-pid") o.server_pid = static_cast<int>(number());
    else if (a == "--open-rate") o.open_rate = std::max(1.0, number());
    else if (a == "--sources") o.sources = std::clamp(static_cast<unsigned>(number()), 1u, 254u);
    else if (a == "--offers") o.offers = static_cast<unsigned>(number());
    else if (a == "--numwant") o.numwant = static_cast<unsigned>(number());
    else if (a == "--swarms") o.swarms = std::max(1u, static_cast<unsigned>(number()));
    else if (a == "--seeders") o.seeders = std::min(1.0, number());
    else if (a == "--sdp-bytes") o.sdp_bytes = std::max(64u, static_cast<unsigned>(number()));
    else if (a == "--timeout") o.timeout_s = std::max(0.1, number());
    else if (a == "--no-reconnect") o.reconnect = false;
    else if (a == "--spin") o.spin = true;
    else if (a == "--seed") o.seed = static_cast<std::uint64_t>(number());
    else {
      std::fprintf(stderr, "loadgen: unknown option %s\n", argv[i]);
      usage(2);
    }
  }
  // ws://HOST:PORT[/PATH]
  std::string_view u = o.url;
  if (u.substr(0, 5) != "ws://") {
    std::fprintf(stderr, "loadgen: --url must be ws://HOST:PORT[/PATH] (no TLS), not %s\n", o.url.c_str());
    std::exit(2);
  }
  u.remove_prefix(5);
  auto slash = u.find('/');
  std::string_view hostport = u.substr(0, slash);
  o.path = slash == std::string_view::npos ? "" : std::string(u.substr(slash));
  auto colon = hostport.rfind(':');
  if (colon == std::string_view::npos) {
    std::fprintf(stderr, "loadgen: --url needs a port: %s\n", o.url.c_str());
    std::exit(2);
  }
  o.host = std::string(hostport.substr(0, colon));
  unsigned port = 0;
  auto [p, ec] = std::from_chars(hostport.data() + colon + 1, hostport.data() + hostport.size(), port);
  if (ec != std::errc{} || port == 0 || port > 65535) {
    std::fprintf(stderr, "loadgen: bad port in --url %s\n", o.url.c_str());
    std::exit(2);
  }
  o.port = static_cast<std::uint16_t>(port);
  if (o.path.empty() || o.path == "/") o.path = o.protocol == proto::native ? "/v1/ws" : "/";
  if (o.connections == 0) {
    std::fprintf(stderr, "loadgen: --connections must be at least 1\n");
    std::exit(2);
  }
  o.threads = std::min(o.threads, o.connections);
  if (o.timeout_s == 0) o.timeout_s = o.protocol == proto::native ? 5 : 30;
  return o;
}

// ------------------------------------------------------------------ small tools

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

const steady::time_point epoch = steady::now();
std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - epoch).count());
}

constexpr char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr char hexdigits[] = "0123456789abcdef";

void put_hex16(char* at, std::uint64_t v) {
  for (int i = 15; i >= 0; --i, v >>= 4) at[i] = hexdigits[v & 0xF];
}
std::optional<std::uint64_t> get_hex16(std::string_view s) {
  if (s.size() < 16) return std::nullopt;
  std::uint64_t v = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = s[static_cast<std::size_t>(i)];
    unsigned d;
    if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
    else return std::nullopt;
    v = (v << 4) | d;
  }
  return v;
}

std::size_t find(std::string_view hay, std::string_view needle, std::size_t from = 0) {
  if (from >= hay.size()) return std::string_view::npos;
  const void* p = ::memmem(hay.data() + from, hay.size() - from, needle.data(), needle.size());
  return p ? static_cast<std::size_t>(static_cast<const char*>(p) - hay.data()) : std::string_view::npos;
}

// The n characters of a JSON string value after `"key":"`, when they are followed by the
// closing quote (our ids are plain ASCII, so no escapes to undo).
std::optional<std::string_view> string_field(std::string_view msg, std::string_view key_quote, std::size_t n) {
  auto at = find(msg, key_quote);
  if (at == std::string_view::npos) return std::nullopt;
  at += key_quote.size();
  if (at + n >= msg.size() || msg[at + n] != '"') return std::nullopt;
  return msg.substr(at, n);
}

// The send time stamped into an SDP ("o=- <16 hex digits> ...").
constexpr std::string_view stamp_marker = "o=- ";
std::optional<std::uint64_t> find_stamp(std::string_view msg) {
  auto at = find(msg, stamp_marker);
  if (at == std::string_view::npos) return std::nullopt;
  return get_hex16(msg.substr(at + stamp_marker.size()));
}

// An SDP of exactly `len` characters (once JSON-decoded), as JSON string content, with a
// 16-digit stamp slot; returns the offset of the slot within the returned text.
std::pair<std::string, std::size_t> make_sdp(unsigned len, std::string_view kind) {
  std::string head = "v=0\\r\\no=- ";
  const std::size_t slot = head.size();
  head += "0000000000000000 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0\\r\\na=x-loadgen:";
  head += kind;
  head += "\\r\\na=ice-pwd:";
  // Decoded length so far: every "\\r\\n" (4 characters here) is 2 once decoded.
  auto decoded = [](const std::string& s) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size(); ++i, ++n)
      if (s[i] == '\\') ++i;
    return n;
  };
  std::string tail = "\\r\\n";
  std::size_t have = decoded(head) + 2;
  std::string pad;
  for (std::size_t i = have; i < len; ++i) pad += alnum[i % 62];
  return {head + pad + tail, slot};
}

// ------------------------------------------------------------------ shared state

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

std::atomic<int> error_lines_left{8};  // a few server error messages are worth showing

// ------------------------------------------------------------------ per-thread driver

class connection;

class driver {
 public:
  driver(global_state& g, unsigned index, unsigned first_conn, unsigned conn_count);
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

  void start() {
    closed_ = false;
    retry_scheduled_ = false;
    rlen_ = 0;
    if (rbuf_.empty()) rbuf_.resize(opt_.idle ? 1024 : 16384);
    fragments_.clear();
    out_.clear();
    wbuf_.clear();
    writing_ = false;
    sock_ = tcp::socket(d_.io());
    boost::system::error_code ec;
    sock_.open(tcp::v4(), ec);
    if (!ec) {
      // Pick the port at connect time (per destination), not at bind time.
      int one = 1;
      ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sock_.bind(tcp::endpoint(g_.sources[index_ % g_.sources.size()], 0), ec);
    }
    if (ec) {
      st().connect_failed.inc();
      return retry_later();
    }
    connecting_ = true;
    connecting_since_ = now_ns();
    ops_ = 1;
    sock_.async_connect(g_.server, [this](boost::system::error_code ec) {
      --ops_;
      if (closed_) return fail();
      if (ec) {
        st().connect_failed.inc();
        if (error_lines_left.fetch_sub(1) > 0) std::fprintf(stderr, "loadgen: connect failed: %s\n", ec.message().c_str());
        return fail();
      }
      on_connected();
    });
  }

  // Gives up on a request (or a connection attempt) that is too old.
  void check_timeout(std::uint64_t now, std::uint64_t limit_ns) {
    if (connecting_ && !closed_ && now - connecting_since_ > 30'000'000'000ull) {
      st().handshake_failed.inc();
      fail();  // the pending operations complete with an error, then it reconnects
      return;
    }
    if (!open_ || !outstanding_ || now - outstanding_since_ < limit_ns) return;
    st().timeouts.inc();
    outstanding_ = false;
    next();
    flush();
  }

  // Sends the next request (announce / native action) now; used by the pacer.
  bool release() {
    if (!open_ || outstanding_) return false;
    send_request();
    flush();
    return true;
  }

  bool open() const { return open_; }

  // The load starts (parked until every connection was open).
  void begin() {
    if (!open_) return;
    if (opt_.protocol == proto::native) native_join();
    else start_loop();
    flush();
  }

 private:
  thread_stats& st() { return d_.stats(); }

  // ---------------------------------------------------------------- handshake
  void on_connected() {
    boost::system::error_code ec;
    sock_.set_option(tcp::no_delay(true), ec);
    // The RFC 6455 sample key: any key will do for a load generator; the answer is checked.
    wbuf_ = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + g_.host_header +
            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nUser-Agent: swarmcoord-loadgen\r\n\r\n";
    ops_ = 1;
    writing_ = true;
    asio::async_write(sock_, asio::buffer(wbuf_), [this](boost::system::error_code ec, std::size_t) {
      --ops_;
      writing_ = false;
      wbuf_.clear();
      if (closed_) return fail();
      if (ec) {
        st().handshake_failed.inc();
        return fail();
      }
      wait_readable();
    });
  }

  // The 101 response is at the start of rbuf_ (possibly followed by frames): check it and
  // return its length, or 0 while it is incomplete.
  std::size_t on_handshake_bytes() {
    std::string_view got(rbuf_.data(), rlen_);
    auto end = got.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      if (rlen_ > 16384) {
        st().handshake_failed.inc();
        fail();
      }
      return 0;
    }
    std::string_view head = got.substr(0, end);
    const bool ok = head.starts_with("HTTP/1.1 101") &&
                    find(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") != std::string_view::npos;
    if (!ok) {
      st().handshake_failed.inc();
      if (error_lines_left.fetch_sub(1) > 0)
        std::fprintf(stderr, "loadgen: upgrade refused: %.*s\n", static_cast<int>(std::min<std::size_t>(head.size(), 200)),
                     head.data());
      fail();
      return 0;
    }
    connecting_ = false;
    open_ = true;
    st().connected.inc();
    st().open_now.inc();
    if (ever_open_) st().reconnects.inc();
    ever_open_ = true;
    if (opt_.protocol == proto::native) {
      send_text(R"({"type":"hello","v":1,"max_neighbors":8})");
      st().sent_other.inc();
      mark_outstanding();
    } else if (opt_.idle) {
      send_idle_announce();
    } else if (!g_.started.load(std::memory_order_relaxed)) {
      d_.park(this);
    } else {
      start_loop();
    }
    return end + 4;
  }

  // ---------------------------------------------------------------- reading
  // rbuf_[0, rlen_) holds bytes not handled yet: the 101 response, then partial frames.
  void wait_readable() {
    if (rbuf_.size() - rlen_ < 512) rbuf_.resize(std::max<std::size_t>(rbuf_.size() * 2, 1024));
    ++ops_;
    sock_.async_read_some(asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
                          [this](boost::system::error_code ec, std::size_t n) {
                            --ops_;
                            if (ec || closed_) {
                              if (ec && ec != asio::error::eof && ec != asio::error::connection_reset &&
                                  ec != asio::error::operation_aborted && error_lines_left.fetch_sub(1) > 0)
                                std::fprintf(stderr, "loadgen: read: %s\n", ec.message().c_str());
                              return fail();
                            }
                            rlen_ += n;
                            on_readable();
                          });
  }

  void on_readable() {
    std::size_t start = 0;
    if (!open_) {
      start = on_handshake_bytes();
      if (closed_) return fail();
      if (!open_) return wait_readable();
    }
    batching_ = true;
    const std::size_t used = start + parse_frames(rbuf_.data() + start, rlen_ - start);
    batching_ = false;
    if (closed_) return fail();
    if (used > 0) {
      std::memmove(rbuf_.data(), rbuf_.data() + used, rlen_ - used);
      rlen_ -= used;
    }
    // A frame bigger than the buffer: make room for all of it.
    if (rlen_ >= 2 && rlen_ == rbuf_.size()) rbuf_.resize(rbuf_.size() * 2);
    flush();
    wait_readable();
  }

  // Handles every complete frame in [p, p + n); returns the bytes consumed.
  std::size_t parse_frames(const char* p, std::size_t n) {
    std::size_t pos = 0;
    while (!closed_ && n - pos >= 2) {
      const auto b0 = static_cast<unsigned char>(p[pos]);
      const auto b1 = static_cast<unsigned char>(p[pos + 1]);
      std::size_t hdr = 2;
      std::uint64_t len = b1 & 0x7F;
      if (len == 126) {
        if (n - pos < 4) break;
        len = (std::uint64_t{static_cast<unsigned char>(p[pos + 2])} << 8) | static_cast<unsigned char>(p[pos + 3]);
        hdr = 4;
      } else if (len == 127) {
        if (n - pos < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(p[pos + 2 + static_cast<std::size_t>(i)]);
        hdr = 10;
      }
      if ((b1 & 0x80) || len > (64u << 20)) {  // servers never mask; nothing here is that big
        st().parse_errors.inc();
        fail();
        break;
      }
      if (n - pos - hdr < len) break;
      std::string_view payload(p + pos + hdr, static_cast<std::size_t>(len));
      pos += hdr + static_cast<std::size_t>(len);
      const bool fin = b0 & 0x80;
      switch (b0 & 0x0F) {
        case 0x1:
        case 0x2:
          if (fin) on_message(payload);
          else fragments_.assign(payload);
          break;
        case 0x0:
          fragments_.append(payload);
          if (fin) {
            on_message(fragments_);
            fragments_.clear();
          }
          break;
        case 0x8:  // close: the server is done with us
          fail();
          break;
        case 0x9:  // ping: pong with the same payload
          send_frame(payload, 0xA);
          break;
        default:  // pong, reserved
          break;
      }
    }
    return pos;
  }

  void on_message(std::string_view m) {
    st().responses.inc();
    if (opt_.protocol == proto::webtorrent) on_webtorrent(m);
    else on_native(m);
  }

  // ---------------------------------------------------------------- writing
  // Appends one masked frame; it goes out with the next flush (at once outside a read batch).
  void send_frame(std::string_view payload, unsigned opcode = 0x1) {
    if (closed_ || !open_) return;
    const std::size_t n = payload.size();
    char hdr[14];
    std::size_t h = 0;
    hdr[h++] = static_cast<char>(0x80 | opcode);
    if (n < 126) {
      hdr[h++] = static_cast<char>(0x80 | n);
    } else if (n < 65536) {
      hdr[h++] = static_cast<char>(0x80 | 126);
      hdr[h++] = static_cast<char>(n >> 8);
      hdr[h++] = static_cast<char>(n & 0xFF);
    } else {
      hdr[h++] = static_cast<char>(0x80 | 127);
      for (int i = 7; i >= 0; --i) hdr[h++] = static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xFF);
    }
    const std::uint32_t key = d_.mask_key();
    std::memcpy(hdr + h, &key, 4);
    unsigned char k[4];
    std::memcpy(k, &key, 4);
    h += 4;
    const std::size_t at = out_.size();
    out_.resize(at + h + n);
    char* dst = out_.data() + at;
    std::memcpy(dst, hdr, h);
    dst += h;
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<char>(static_cast<unsigned char>(payload[i]) ^ k[i & 3]);
    if (!batching_) flush();
  }

  void send_text(std::string_view text) { send_frame(text); }

  void flush() {
    if (writing_ || out_.empty() || closed_) return;
    std::swap(out_, wbuf_);
    writing_ = true;
    ++ops_;
    asio::async_write(sock_, asio::buffer(wbuf_), [this](boost::system::error_code ec, std::size_t) {
      --ops_;
      writing_ = false;
      wbuf_.clear();
      if (ec || closed_) {
        if (ec && !closed_) st().write_errors.inc();
        return fail();
      }
      flush();
    });
  }

  // ---------------------------------------------------------------- the request loop
  void start_loop() {
    if (d_.paced()) d_.ready(this);
    else send_request();
  }

  // The next request, or into the pacer's ready list.
  void next() {
    if (!open_ || opt_.idle) return;
    if (d_.paced()) d_.ready(this);
    else send_request();
  }

  void send_request() {
    if (opt_.protocol == proto::webtorrent) send_announce();
    else native_action();
  }

  void mark_outstanding() {
    outstanding_ = true;
    outstanding_since_ = now_ns();
  }

  // ---------------------------------------------------------------- WebTorrent
  void send_announce() {
    const bool seeder = d_.unit(d_.rng) < opt_.seeders;
    const auto& t = d_.announce_tpl[seeder ? 1 : 0];
    std::string& b = d_.scratch;
    b.assign(t.text);
    const auto& ih = g_.info_hashes[d_.swarm_index()];
    std::memcpy(b.data() + t.info_hash, ih.data(), 20);
    std::memcpy(b.data() + t.peer_id, peer_id_.data(), 20);
    const std::uint64_t now = now_ns();
    for (std::size_t i = 0; i < t.offer_ids.size(); ++i) {
      // offer_id: 4 characters of this connection, 16 hex digits of a sequence: unique per peer.
      char* at = b.data() + t.offer_ids[i];
      std::uint32_t p = offer_prefix_;
      for (int k = 0; k < 4; ++k, p /= 62) at[k] = alnum[p % 62];
      put_hex16(at + 4, ++offer_seq_);
      put_hex16(b.data() + t.stamps[i], now);
    }
    outstanding_ = true;
    outstanding_since_ = now;
    st().sent_announce.inc();
    send_frame(b);
  }

  void send_idle_announce() {
    std::string& b = d_.scratch;
    b.assign(d_.idle_tpl);
    std::memcpy(b.data() + d_.idle_info_hash, g_.info_hashes[d_.swarm_index()].data(), 20);
    std::memcpy(b.data() + d_.idle_peer_id, peer_id_.data(), 20);
    mark_outstanding();
    st().sent_announce.inc();
    send_frame(b);
  }

  void on_webtorrent(std::string_view m) {
    if (find(m, R"("offer":)") != std::string_view::npos) {
      st().r_offer.inc();
      auto ih = string_field(m, R"("info_hash":")", 20);
      auto from = string_field(m, R"("peer_id":")", 20);
      auto oid = string_field(m, R"("offer_id":")", 20);
      auto stamp = find_stamp(m);
      if (!ih || !from || !oid || !stamp) {
        st().parse_errors.inc();
        return;
      }
      // Answer at once, on this socket, as a browser would once its answer SDP is ready.
      std::string& b = d_.scratch;
      b.assign(d_.answer_tpl);
      std::memcpy(b.data() + d_.ans_info_hash, ih->data(), 20);
      std::memcpy(b.data() + d_.ans_peer_id, peer_id_.data(), 20);
      std::memcpy(b.data() + d_.ans_to_peer_id, from->data(), 20);
      std::memcpy(b.data() + d_.ans_offer_id, oid->data(), 20);
      put_hex16(b.data() + d_.ans_stamp, *stamp);
      st().sent_answer.inc();
      send_frame(b);
      return;
    }
    if (find(m, R"("answer":)") != std::string_view::npos) {
      st().r_answer.inc();
      auto stamp = find_stamp(m);
      if (!stamp) {
        st().parse_errors.inc();
        return;
      }
      const std::uint64_t now = now_ns();
      if (d_.measuring() && now >= *stamp) st().relay_lat.record(now - *stamp);
      return;
    }
    if (find(m, R"("failure reason")") != std::string_view::npos) {
      st().r_error.inc();
      if (error_lines_left.fetch_sub(1) > 0)
        std::fprintf(stderr, "loadgen: server error: %.*s\n", static_cast<int>(std::min<std::size_t>(m.size(), 300)),
                     m.data());
      if (outstanding_) {
        outstanding_ = false;
        next();
      }
      return;
    }
    if (find(m, R"("interval")") != std::string_view::npos || find(m, R"("complete")") != std::string_view::npos) {
      st().r_announce.inc();
      if (!outstanding_) return;  // a reply we already gave up on
      outstanding_ = false;
      const std::uint64_t now = now_ns();
      if (d_.measuring()) st().announce_lat.record(now - outstanding_since_);
      if (opt_.idle) {
        if (!idle_done_) {
          idle_done_ = true;
          st().idle_ready.inc();
        }
        return;
      }
      next();
      return;
    }
    st().r_other.inc();
  }

  // ---------------------------------------------------------------- native
  const std::string& url() const { return g_.swarm_urls[swarm_]; }

  void native_join() {
    swarm_ = d_.swarm_index();
    std::string& b = d_.scratch;
    b.assign(R"({"type":"join","swarm":")");
    b += url();
    b += R"(","size":4194304,"block_size":65536)";
    if (seeder_native_) b += R"(,"have":"all")";
    b += '}';
    neighbors_.clear();
    joined_ = true;
    awaiting_neighbors_ = false;
    mark_outstanding();
    st().sent_announce.inc();
    send_frame(b);
  }

  void native_leave() {
    std::string& b = d_.scratch;
    b.assign(R"({"type":"leave","swarm":")");
    b += url();
    b += R"("})";
    joined_ = false;
    neighbors_.clear();
    st().sent_other.inc();
    send_frame(b);
  }

  void native_have() {
    std::string& b = d_.scratch;
    b.assign(R"({"type":"have","swarm":")");
    b += url();
    b += R"(","blocks":[)";
    const unsigned n = 1 + static_cast<unsigned>(d_.rng() % 4);
    for (unsigned i = 0; i < n; ++i) {
      if (i) b += ',';
      char num[24];
      auto [end, ec] = std::to_chars(num, num + sizeof num, d_.rng() % 64);
      b.append(num, end);
    }
    b += "]}";
    st().sent_other.inc();
    send_frame(b);
  }

  void native_offer(std::uint64_t to) {
    std::string& b = d_.scratch;
    b.assign(R"({"type":"signal","swarm":")");
    b += url();
    b += R"(","to":")";
    const std::size_t to_at = b.size();
    b.append(16, '0');
    b += R"(","data":{"type":"offer","sdp":")";
    const std::size_t sdp_at = b.size();
    b += d_.native_offer_sdp;
    b += R"("}})";
    put_hex16(b.data() + to_at, to);
    const std::uint64_t now = now_ns();
    put_hex16(b.data() + sdp_at + d_.native_offer_stamp, now);
    outstanding_ = true;
    outstanding_since_ = now;
    st().sent_other.inc();
    send_frame(b);
  }

  // One step of the native mix (see the top of the file).
  void native_action() {
    if (!joined_) return native_join();
    const double r = d_.unit(d_.rng);
    if (r < 0.2 && !seeder_native_) {
      native_have();  // no reply expected: the next action follows at once
      if (!neighbors_.empty()) return native_offer(neighbors_[d_.rng() % neighbors_.size()]);
      native_leave();
      return native_join();
    }
    if (r < 0.8 && !neighbors_.empty()) return native_offer(neighbors_[d_.rng() % neighbors_.size()]);
    native_leave();
    native_join();
  }

  // Whether a message names the swarm this connection is in now (`"swarm":"URL"` follows the type).
  bool current_swarm(std::string_view m) const {
    if (!joined_) return false;
    auto sw = find(m, R"("swarm":")");
    if (sw == std::string_view::npos) return false;
    const std::size_t at = sw + 9;
    return at + url().size() < m.size() && m.substr(at, url().size()) == url() && m[at + url().size()] == '"';
  }

  void on_native(std::string_view m) {
    constexpr std::string_view type_key = R"({"type":")";
    if (!m.starts_with(type_key)) {
      st().r_other.inc();
      st().parse_errors.inc();
      return;
    }
    std::string_view rest = m.substr(type_key.size());
    if (rest.starts_with("signal\"")) {
      if (!current_swarm(m)) {
        st().r_other.inc();  // for a swarm we left meanwhile
        return;
      }
      auto from = string_field(m, R"("from":")", 16);
      auto dat = find(m, R"("data":)");
      if (!from || dat == std::string_view::npos) {
        st().parse_errors.inc();
        return;
      }
      std::string_view data = m.substr(dat);
      auto stamp = find_stamp(data);
      if (find(data, R"("type":"offer")") != std::string_view::npos) {
        st().r_offer.inc();
        if (!stamp) {
          st().parse_errors.inc();
          return;
        }
        // Answer to the sender, in this swarm.
        std::string& b = d_.scratch;
        b.assign(R"({"type":"signal","swarm":")");
        b += url();
        b += R"(","to":")";
        b.append(*from);
        b += R"(","data":{"type":"answer","sdp":")";
        const std::size_t sdp_at = b.size();
        b += d_.native_answer_sdp;
        b += R"("}})";
        put_hex16(b.data() + sdp_at + d_.native_answer_stamp, *stamp);
        st().sent_answer.inc();
        send_frame(b);
      } else {
        st().r_answer.inc();
        if (stamp) {
          const std::uint64_t now = now_ns();
          if (d_.measuring() && now >= *stamp) st().relay_lat.record(now - *stamp);
        }
        if (outstanding_) {
          outstanding_ = false;
          next();
        }
      }
      return;
    }
    if (rest.starts_with("neighbors\"")) {
      st().r_other.inc();
      if (!current_swarm(m)) return;
      // The neighbors that follows joined completes the join.
      const bool completes_join = awaiting_neighbors_;
      awaiting_neighbors_ = false;
      // add: [{"peer_id":"..."...}], remove: ["...", ...]
      auto add = find(m, R"("add":[)");
      auto rem = find(m, R"("remove":[)");
      if (add == std::string_view::npos || rem == std::string_view::npos) {
        st().parse_errors.inc();
        return;
      }
      for (std::size_t at = add; (at = find(m, R"("peer_id":")", at)) != std::string_view::npos && at < rem;) {
        at += 11;
        if (auto id = get_hex16(m.substr(at)))
          if (std::find(neighbors_.begin(), neighbors_.end(), *id) == neighbors_.end() && neighbors_.size() < 64)
            neighbors_.push_back(*id);
      }
      for (std::size_t at = rem + 10; at < m.size() && m[at] == '"';) {
        if (auto id = get_hex16(m.substr(at + 1))) std::erase(neighbors_, *id);
        at += 18;
        if (at < m.size() && m[at] == ',') ++at;
      }
      if (completes_join && outstanding_) {
        outstanding_ = false;
        next();
      }
      return;
    }
    if (rest.starts_with("joined\"")) {
      st().r_announce.inc();
      if (!outstanding_ || !current_swarm(m)) return;
      if (d_.measuring()) st().announce_lat.record(now_ns() - outstanding_since_);
      if (opt_.idle) {
        outstanding_ = false;
        if (!idle_done_) {
          idle_done_ = true;
          st().idle_ready.inc();
        }
        return;
      }
      awaiting_neighbors_ = true;  // still outstanding: the next step needs the neighbours
      return;
    }
    if (rest.starts_with("welcome\"")) {
      st().r_other.inc();
      outstanding_ = false;
      if (!opt_.idle && !g_.started.load(std::memory_order_relaxed)) return d_.park(this);
      // The first join goes out at once; pacing applies from the next request on.
      native_join();
      return;
    }
    if (rest.starts_with("error\"")) {
      st().r_error.inc();
      if (error_lines_left.fetch_sub(1) > 0)
        std::fprintf(stderr, "loadgen: server error: %.*s\n", static_cast<int>(std::min<std::size_t>(m.size(), 300)),
                     m.data());
      // A refused join leaves us outside any swarm.
      if (find(m, R"("ref":"join")") != std::string_view::npos) joined_ = false;
      if (outstanding_) {
        outstanding_ = false;
        next();
      }
      return;
    }
    st().r_other.inc();
  }

  // ---------------------------------------------------------------- failure
  // The connection failed or the server closed it: close, then reopen once no operation is
  // left in flight.
  void fail() {
    if (!closed_) {
      closed_ = true;
      connecting_ = false;
      if (open_) {
        open_ = false;
        st().closed.inc();
        st().open_now.v.fetch_sub(1, std::memory_order_relaxed);
      }
      outstanding_ = false;
      boost::system::error_code ec;
      sock_.close(ec);
    }
    if (ops_ == 0 && !retry_scheduled_) {
      retry_scheduled_ = true;
      retry_later();
    }
  }

  void retry_later() {
    if (!opt_.reconnect || opt_.idle || g_.stop.load(std::memory_order_relaxed)) return;
    if (!timer_) timer_ = std::make_unique<asio::steady_timer>(d_.io());
    timer_->expires_after(std::chrono::seconds(1));
    timer_->async_wait([this](boost::system::error_code ec) {
      if (!ec && !g_.stop.load(std::memory_order_relaxed)) start();
    });
  }

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

driver::driver(global_state& gs, unsigned index, unsigned first_conn, unsigned conn_count)
    : g(gs),
      opt(gs.opt),
      rng(gs.opt.seed * 0x9E3779B97F4A7C15ull + index + 1),
      gamma(gs.opt.gamma_shape, gs.opt.gamma_scale),
      index_(index),
      first_conn_(first_conn),
      conn_count_(conn_count) {
  auto [sdp, stamp_at] = make_sdp(opt.sdp_bytes, "offer");
  for (int seeder = 0; seeder < 2; ++seeder) {
    auto& t = announce_tpl[static_cast<std::size_t>(seeder)];
    t.text = R"({"action":"announce","info_hash":")";
    t.info_hash = t.text.size();
    t.text += std::string(20, 'I') + R"(","peer_id":")";
    t.peer_id = t.text.size();
    t.text += std::string(20, 'P') + R"(","numwant":)" + std::to_string(opt.numwant) +
              R"(,"uploaded":0,"downloaded":0,"left":)" + (seeder ? "0" : "50") + R"(,"event":")" +
              (seeder ? "completed" : "started") + R"(","offers":[)";
    for (unsigned i = 0; i < opt.offers; ++i) {
      if (i) t.text += ',';
      t.text += R"({"offer":{"type":"offer","sdp":")";
      t.stamps.push_back(t.text.size() + stamp_at);
      t.text += sdp + R"("},"offer_id":")";
      t.offer_ids.push_back(t.text.size());
      t.text += std::string(20, 'O') + R"("})";
    }
    t.text += "]}";
  }
  auto [asdp, astamp] = make_sdp(opt.sdp_bytes, "answer");
  answer_tpl = R"({"action":"announce","info_hash":")";
  ans_info_hash = answer_tpl.size();
  answer_tpl += std::string(20, 'I') + R"(","peer_id":")";
  ans_peer_id = answer_tpl.size();
  answer_tpl += std::string(20, 'P') + R"(","to_peer_id":")";
  ans_to_peer_id = answer_tpl.size();
  answer_tpl += std::string(20, 'T') + R"(","offer_id":")";
  ans_offer_id = answer_tpl.size();
  answer_tpl += std::string(20, 'O') + R"(","answer":{"type":"answer","sdp":")";
  ans_stamp = answer_tpl.size() + astamp;
  answer_tpl += asdp + R"("}})";

  idle_tpl = R"({"action":"announce","info_hash":")";
  idle_info_hash = idle_tpl.size();
  idle_tpl += std::string(20, 'I') + R"(","peer_id":")";
  idle_peer_id = idle_tpl.size();
  idle_tpl += std::string(20, 'P') + R"(","numwant":0,"uploaded":0,"downloaded":0,"left":50,"event":"started"})";

  std::tie(native_offer_sdp, native_offer_stamp) = make_sdp(opt.sdp_bytes, "offer");
  std::tie(native_answer_sdp, native_answer_stamp) = make_sdp(opt.sdp_bytes, "answer");
  per_request_ = opt.protocol == proto::webtorrent ? 1.0 + 2.0 * opt.offers : 3.0;
}

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

// ------------------------------------------------------------------ metrics scrape

struct scrape_result {
  bool ok = false;
  std::string error;
  double sent_total = 0;  // swarmcoord_messages_sent_total, summed over labels
  std::vector<std::pair<std::string, double>> others;
};

// Metrics whose deltas tell what the daemon did besides answering (summed over labels).
constexpr std::array<std::string_view, 10> watched = {
    "swarmcoord_messages_received_total", "swarmcoord_offers_relayed_total",
    "swarmcoord_offers_unrelayed_total",  "swarmcoord_answers_relayed_total",
    "swarmcoord_answers_dropped_total",   "swarmcoord_protocol_errors_total",
    "swarmcoord_reads_throttled_total",   "swarmcoord_slow_consumers_closed_total",
    "swarmcoord_deliveries_dropped_total", "swarmcoord_connections_rejected_total"};

scrape_result scrape(const std::string& url) {
  scrape_result r;
  std::string_view u = url;
  if (u.substr(0, 7) != "http://") {
    r.error = "--metrics must be http://HOST:PORT/PATH";
    return r;
  }
  u.remove_prefix(7);
  auto slash = u.find('/');
  std::string hostport(u.substr(0, slash));
  std::string target = slash == std::string_view::npos ? "/metrics" : std::string(u.substr(slash));
  auto colon = hostport.rfind(':');
  if (colon == std::string::npos) {
    r.error = "--metrics needs a port";
    return r;
  }
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(5));
    stream.connect(resolver.resolve(hostport.substr(0, colon), hostport.substr(colon + 1)));
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, hostport);
    req.set(http::field::connection, "close");
    http::write(stream, req);
    beast::flat_buffer b;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, b, parser);
    if (parser.get().result() != http::status::ok) {
      r.error = "HTTP " + std::to_string(parser.get().result_int());
      return r;
    }
    std::string_view body = parser.get().body();
    r.others.resize(watched.size());
    for (std::size_t i = 0; i < watched.size(); ++i) r.others[i] = {std::string(watched[i]), 0};
    while (!body.empty()) {
      auto nl = body.find('\n');
      std::string_view line = body.substr(0, nl);
      body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
      if (line.empty() || line[0] == '#') continue;
      auto name_end = line.find_first_of("{ ");
      if (name_end == std::string_view::npos) continue;
      std::string_view name = line.substr(0, name_end);
      auto sp = line.rfind(' ');
      const double v = std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
      if (name == "swarmcoord_messages_sent_total") r.sent_total += v;
      for (std::size_t i = 0; i < watched.size(); ++i)
        if (name == watched[i]) r.others[i].second += v;
    }
    r.ok = true;
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

// utime + stime of a process, in seconds; negative when unreadable.
double process_cpu_seconds(int pid) {
  if (pid <= 0) return -1;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "r");
  if (!f) return -1;
  char buf[2048];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // Fields after the command (which may hold spaces) start after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return -1;
  unsigned long utime = 0, stime = 0;
  // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Busy time of all CPUs together (user, nice, system, irq, softirq, steal), in seconds.
double machine_cpu_seconds() {
  FILE* f = std::fopen("/proc/stat", "r");
  if (!f) return -1;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  const int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system, &idle, &iowait, &irq,
                            &softirq, &steal);
  std::fclose(f);
  if (n < 8) return -1;
  return static_cast<double>(user + nice + system + irq + softirq + steal) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double own_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

std::atomic<bool> interrupted{false};
extern "C" void on_signal(int) { interrupted.store(true); }

void sleep_for(double seconds) {
  const auto until = steady::now() + std::chrono::duration<double>(seconds);
  while (steady::now() < until && !interrupted.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  global_state g;
  g.opt = parse_options(argc, argv);
  const options& opt = g.opt;

  // One source address has ~28,000 ephemeral ports; and every connection is a descriptor.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur != RLIM_INFINITY && opt.connections + 64 > rl.rlim_cur)
    std::fprintf(stderr, "loadgen: warning: %u connections but only %llu open files allowed\n", opt.connections,
                 static_cast<unsigned long long>(rl.rlim_cur));
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);

  boost::system::error_code ec;
  auto addr = asio::ip::make_address_v4(opt.host == "localhost" ? "127.0.0.1" : opt.host, ec);
  if (ec) {
    std::fprintf(stderr, "loadgen: --url host must be an IPv4 address: %s\n", opt.host.c_str());
    return 2;
  }
  g.server = tcp::endpoint(addr, opt.port);
  g.host_header = opt.host + ":" + std::to_string(opt.port);
  // Loopback servers: spread over 127.0.0.1..N. Elsewhere: the default source address.
  if (addr.is_loopback())
    for (unsigned i = 1; i <= opt.sources; ++i) g.sources.push_back(asio::ip::make_address_v4((127u << 24) | i));
  else
    g.sources.push_back(asio::ip::address_v4::any());

  std::mt19937_64 ids(opt.seed);
  g.info_hashes.resize(opt.swarms);
  for (auto& ih : g.info_hashes)
    for (int i = 0; i < 20; ++i) ih += alnum[ids() % 62];
  if (opt.protocol == proto::native) {
    g.swarm_urls.resize(opt.swarms);
    for (unsigned i = 0; i < opt.swarms; ++i) g.swarm_urls[i] = "https://cdn.example/lg/" + std::to_string(i) + ".bin";
  }

  std::vector<std::unique_ptr<driver>> drivers;
  unsigned first = 0;
  for (unsigned t = 0; t < opt.threads; ++t) {
    const unsigned n = opt.connections / opt.threads + (t < opt.connections % opt.threads ? 1 : 0);
    drivers.push_back(std::make_unique<driver>(g, t, first, n));
    first += n;
  }
  std::printf("loadgen: %s %s, %u connections over %zu source address%s, %u thread%s, %s\n",
              opt.protocol == proto::native ? "native" : "webtorrent", opt.url.c_str(), opt.connections,
              g.sources.size(), g.sources.size() == 1 ? "" : "es", opt.threads, opt.threads == 1 ? "" : "s",
              opt.idle ? "idle" : opt.rate > 0 ? ("paced at " + std::to_string(static_cast<long>(opt.rate)) + " messages/s").c_str()
                                                : "closed loop");
  std::fflush(stdout);

  const auto started = steady::now();
  std::vector<std::thread> threads;
  for (auto& d : drivers) threads.emplace_back([&d] { d->run(); });

  auto total = [&](auto field) {
    std::uint64_t s = 0;
    for (auto& d : drivers) s += (d->stats().*field).get();
    return s;
  };

  // Ramp: until every connection is open or has failed at least once (or a deadline).
  const double ramp_deadline = opt.connections / opt.open_rate + 30;
  unsigned long long last_shown = 0;
  while (!interrupted.load()) {
    const auto connected = total(&thread_stats::connected);
    const auto failed = total(&thread_stats::connect_failed) + total(&thread_stats::handshake_failed);
    const double t = std::chrono::duration<double>(steady::now() - started).count();
    if (connected + failed >= opt.connections || t > ramp_deadline) break;
    if (static_cast<unsigned long long>(t) != last_shown && static_cast<unsigned long long>(t) % 5 == 0) {
      last_shown = static_cast<unsigned long long>(t);
      std::fprintf(stderr, "loadgen: %llu connected, %llu failed after %.0f s\n", static_cast<unsigned long long>(connected),
                   static_cast<unsigned long long>(failed), t);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double ramp_s = std::chrono::duration<double>(steady::now() - started).count();
  std::printf("connections: %s open after %.1f s (connect failures %s, handshake failures %s)\n",
              with_commas(total(&thread_stats::open_now)).c_str(), ramp_s,
              with_commas(total(&thread_stats::connect_failed)).c_str(),
              with_commas(total(&thread_stats::handshake_failed)).c_str());
  std::fflush(stdout);

  int exit_code = 0;
  if (opt.idle) {
    // Every open connection has its one reply (or the deadline passed): report and hold.
    const auto wait_from = steady::now();
    while (!interrupted.load() && total(&thread_stats::idle_ready) < total(&thread_stats::open_now) &&
           std::chrono::duration<double>(steady::now() - wait_from).count() < 30)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto ready = total(&thread_stats::idle_ready);
    std::printf("IDLE_READY connections=%llu announced=%llu failed=%llu errors=%llu\n",
                static_cast<unsigned long long>(total(&thread_stats::open_now)), static_cast<unsigned long long>(ready),
                static_cast<unsigned long long>(total(&thread_stats::connect_failed) + total(&thread_stats::handshake_failed)),
                static_cast<unsigned long long>(total(&thread_stats::r_error)));
    std::fflush(stdout);
    sleep_for(opt.duration);
    const auto closed = total(&thread_stats::closed);
    std::printf("RESULT idle=1 connections=%llu announced=%llu closed_by_server=%llu\n",
                static_cast<unsigned long long>(total(&thread_stats::open_now)), static_cast<unsigned long long>(ready),
                static_cast<unsigned long long>(closed));
    std::fflush(stdout);
    _exit(ready == 0 ? 1 : 0);
  }

  g.started.store(true);
  for (auto& d : drivers) asio::post(d->io(), [&d] { d->start_load(); });
  g.phase.store(warm);
  sleep_for(opt.warmup);

  // The window: our counters and the daemon's, each read at both ends.
  auto take = [&] {
    snapshot s;
    for (auto& d : drivers) s += d->stats();
    return s;
  };
  g.phase.store(measure);
  const auto t0 = steady::now();
  const snapshot s0 = take();
  const double cpu0 = own_cpu_seconds();
  const double server_cpu0 = process_cpu_seconds(opt.server_pid);
  const double machine0 = machine_cpu_seconds();
  scrape_result m0;
  if (!opt.metrics_url.empty()) m0 = scrape(opt.metrics_url);
  sleep_for(opt.duration);
  g.phase.store(done);
  const auto t1 = steady::now();
  const snapshot s1 = take();
  const double cpu1 = own_cpu_seconds();
  const double server_cpu1 = process_cpu_seconds(opt.server_pid);
  const double machine1 = machine_cpu_seconds();
  scrape_result m1;
  if (!opt.metrics_url.empty()) m1 = scrape(opt.metrics_url);
  const double seconds = std::chrono::duration<double>(t1 - t0).count();
  const auto open_at_end = total(&thread_stats::open_now);

  g.stop.store(true);
  for (auto& d : drivers) d->io().stop();
  for (auto& t : threads) t.join();

  histogram ann, rel;
  for (auto& d : drivers) {
    ann.merge(d->stats().announce_lat);
    rel.merge(d->stats().relay_lat);
  }
  const snapshot w = s1 - s0;
  const double rps = seconds > 0 ? static_cast<double>(w.responses) / seconds : 0;
  auto us = [](std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; };
  auto pct = [&](std::uint64_t part) {
    return w.responses ? 100.0 * static_cast<double>(part) / static_cast<double>(w.responses) : 0.0;
  };
  const bool native = opt.protocol == proto::native;

  std::printf("window: %.2f s after %.1f s of warm-up; %s connections open at the end\n", seconds, opt.warmup,
              with_commas(open_at_end).c_str());
  std::printf("responses: %s = %s/s  (%s %.1f%%, offer %.1f%%, answer %.1f%%, error %.1f%%, other %.1f%%)\n",
              with_commas(w.responses).c_str(), with_commas(static_cast<std::uint64_t>(rps)).c_str(),
              native ? "joined" : "announce", pct(w.r_announce), pct(w.r_offer), pct(w.r_answer), pct(w.r_error),
              pct(w.r_other));
  std::printf("requests sent: %s %s, %s answers, %s other\n", with_commas(w.sent_announce).c_str(),
              native ? "joins" : "announces", with_commas(w.sent_answer).c_str(), with_commas(w.sent_other).c_str());
  std::printf("%s latency: p50 %.0f us, p99 %.0f us, max %.0f us (%s samples)\n",
              native ? "join -> joined" : "announce -> response", us(ann.quantile(0.5)), us(ann.quantile(0.99)),
              us(ann.max()), with_commas(ann.count()).c_str());
  std::printf("offer -> relayed answer latency: p50 %.0f us, p99 %.0f us, max %.0f us (%s samples)\n",
              us(rel.quantile(0.5)), us(rel.quantile(0.99)), us(rel.max()), with_commas(rel.count()).c_str());
  const double own_cpu = seconds > 0 ? 100.0 * (cpu1 - cpu0) / seconds : 0;
  std::printf("cpu: loadgen %.0f%%", own_cpu);
  double server_cpu = -1;
  if (server_cpu0 >= 0 && server_cpu1 >= 0) {
    server_cpu = 100.0 * (server_cpu1 - server_cpu0) / seconds;
    std::printf(", server (pid %d) %.0f%%", opt.server_pid, server_cpu);
  }
  // What else ran on the machine meanwhile (other processes, and kernel work on their behalf):
  // a shared machine makes every figure here smaller.
  double others_cpu = -1;
  if (machine0 >= 0 && machine1 >= 0) {
    others_cpu = std::max(0.0, 100.0 * (machine1 - machine0) / seconds - own_cpu - std::max(0.0, server_cpu));
    std::printf(", everything else %.0f%%", others_cpu);
  }
  std::printf(" (100%% = one core)\n");
  std::printf("problems: timeouts %s, closed by server %s, reconnects %s, write errors %s, parse errors %s, "
              "server errors %s\n",
              with_commas(w.timeouts).c_str(), with_commas(w.closed).c_str(),
              with_commas(total(&thread_stats::reconnects)).c_str(), with_commas(w.write_errors).c_str(),
              with_commas(w.parse_errors).c_str(), with_commas(w.r_error).c_str());
  double server_sent = -1;
  if (!opt.metrics_url.empty()) {
    if (m0.ok && m1.ok) {
      server_sent = m1.sent_total - m0.sent_total;
      const double diff = w.responses ? 100.0 * (server_sent - static_cast<double>(w.responses)) / static_cast<double>(w.responses) : 0;
      std::printf("cross-check: swarmcoord_messages_sent_total delta %s, loadgen responses %s (%+.2f%%)\n",
                  with_commas(static_cast<std::uint64_t>(server_sent)).c_str(), with_commas(w.responses).c_str(), diff);
      std::printf("daemon deltas:");
      for (std::size_t i = 0; i < watched.size(); ++i) {
        const double d = m1.others[i].second - m0.others[i].second;
        std::printf("%s %s=%s", i % 3 == 0 ? "\n " : "", m1.others[i].first.c_str() + std::strlen("swarmcoord_"),
                    with_commas(static_cast<std::uint64_t>(std::max(0.0, d))).c_str());
      }
      std::printf("\n");
    } else {
      std::printf("cross-check: scraping %s failed: %s\n", opt.metrics_url.c_str(),
                  (m0.ok ? m1.error : m0.error).c_str());
    }
  }
  std::printf("RESULT responses=%llu seconds=%.3f rps=%.0f announce_p50_us=%.0f announce_p99_us=%.0f "
              "relay_p50_us=%.0f relay_p99_us=%.0f protocol=%s connections=%llu server_sent=%.0f "
              "server_cpu_pct=%.0f loadgen_cpu_pct=%.0f others_cpu_pct=%.0f timeouts=%llu closed=%llu errors=%llu\n",
              static_cast<unsigned long long>(w.responses), seconds, rps, us(ann.quantile(0.5)), us(ann.quantile(0.99)),
              us(rel.quantile(0.5)), us(rel.quantile(0.99)), native ? "native" : "webtorrent",
              static_cast<unsigned long long>(open_at_end), server_sent, server_cpu, own_cpu, others_cpu,
              static_cast<unsigned long long>(w.timeouts), static_cast<unsigned long long>(w.closed),
              static_cast<unsigned long long>(w.r_error));
  std::fflush(stdout);
  if (total(&thread_stats::connected) == 0 || w.responses == 0) exit_code = 1;
  // Tearing down thousands of sockets and their handlers buys nothing: leave.
  _exit(exit_code);
}
