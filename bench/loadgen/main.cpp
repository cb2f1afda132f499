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
// I/O: Asio, with the WebSocket framing done by hand (see connection.hpp): no compression, frames
// masked with a cheap PRNG, every message prebuilt from a template and patched in place.
//
// Exit status: 0, or 1 when no connection could be opened or nothing was received.
//
// Files: main.cpp (this: the run and the report), options.{hpp,cpp}, driver.{hpp,cpp} (a thread's
// connections, opening and pacing), connection.hpp with connection.cpp (the WebSocket client)
// and workload.cpp (the workloads), stats.{hpp,cpp} (counters, histograms, /metrics, CPU),
// common.hpp (clock and text tools).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "common.hpp"
#include "driver.hpp"
#include "options.hpp"
#include "stats.hpp"

using namespace loadgen;

namespace {

std::atomic<bool> interrupted{false};
extern "C" void on_signal(int) { interrupted.store(true); }

void sleep_for(double seconds) {
  const auto until = steady::now() + std::chrono::duration<double>(seconds);
  while (steady::now() < until && !interrupted.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
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
