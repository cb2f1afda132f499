#include "options.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace loadgen {

namespace {

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

}  // namespace

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

}  // namespace loadgen
