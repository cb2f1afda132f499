#include "stats.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <time.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace loadgen {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

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

std::string with_commas(std::uint64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

}  // namespace loadgen
