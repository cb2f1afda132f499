// swarmcoord: the daemon. Wires config, logging, the worker runtime, the admin listener and
// signal handling together; everything else lives in the layers below.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <optional>
#include <iostream>
#include <memory>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "server/allocator.hpp"
#include "server/config/config.hpp"
#include "server/manifest/manifest.hpp"
#include "server/metrics/metrics.hpp"
#include "server/net/http_routes.hpp"
#include "server/net/listener.hpp"
#include "server/net/runtime.hpp"
#include "server/net/session.hpp"

namespace {

namespace asio = boost::asio;
using namespace swarmcoord;
constexpr const char* version = SWARMCOORD_VERSION;

// %* in the JSON pattern: the message, escaped as a JSON string body.
class json_message_flag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    // Messages may quote client input: nlohmann escapes it and replaces invalid UTF-8, so
    // every line stays valid JSON. The quotes around the dumped string are the pattern's.
    const std::string quoted = nlohmann::json(std::string_view(msg.payload.data(), msg.payload.size()))
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(quoted.data() + 1, quoted.data() + quoted.size() - 1);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<json_message_flag>(); }
};

void setup_logging(const config::config& cfg) {
  auto logger = spdlog::stderr_color_mt("swarmcoord");
  if (cfg.log.format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    f->add_flag<json_message_flag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","thread":%t,"msg":"%*"})");
    logger->set_formatter(std::move(f));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(cfg.log.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

// Every connection is a descriptor: take the hard limit (systemd and Docker give a soft limit
// far below it), and say so when even that is below what the config allows.
void raise_descriptor_limit(const config::config& cfg) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  const auto wanted = cfg.server.max_connections + cfg.server.max_http_sessions + cfg.admin.max_connections + 64;
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < wanted)
    spdlog::warn("descriptor limit {} is below server.max_connections + max_http_sessions + admin.max_connections "
                 "(~{}): past it, new connections are closed at once (raise ulimit -n / LimitNOFILE)",
                 lim.rlim_cur, wanted);
}

int serve(const config::config& cfg) {
  raise_descriptor_limit(cfg);
  // control first: it is destroyed last, after the runtime whose gathers may still hold
  // admin sessions bound to it.
  asio::io_context control{1};
  net::runtime rt(cfg);
  rt.start();

  metrics::exporter exporter(version);
  net::admin_routes admin(rt, exporter, version);
  asio::ip::tcp::endpoint admin_at(asio::ip::make_address(cfg.admin.listen.host), cfg.admin.listen.port);
  asio::ip::tcp::acceptor admin_acceptor(control);
  try {
    admin_acceptor = net::listener::bind(control.get_executor(), admin_at, false);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("admin.listen: cannot listen on " + cfg.admin.listen.to_string() + ": " +
                             e.code().message());
  }
  admin_at = admin_acceptor.local_endpoint();
  // Out of descriptors, the admin listener still serves (on its reserved one): /metrics is
  // how the operator finds out.
  auto admin_listener = std::make_shared<net::listener>(
      std::move(admin_acceptor), [&admin](asio::ip::tcp::socket&& s) { net::start_admin_session(std::move(s), admin); },
      net::listener::observer{}, net::listener::when_out_of_descriptors::serve);
  admin_listener->start();

  auto show = [](const asio::ip::tcp::endpoint& ep) {
    return ep.address().is_v6() ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
                                : ep.address().to_string() + ":" + std::to_string(ep.port());
  };
  // SIGTERM/SIGINT: drain, then exit 0. A second signal: exit at once. Caught from before the
  // "listening" line, which supervisors and tests take as the go-ahead to signal (asio keeps a
  // signal that arrives before the wait below).
  asio::signal_set signals(control, SIGINT, SIGTERM);
  spdlog::info("swarmcoord {} listening public={} admin={} workers={} tls={}", version, show(rt.public_endpoint()),
               show(admin_at), rt.worker_count(), rt.tls() ? "on" : "off");
  spdlog::info("memory allocator: {}", allocator_description());

  asio::steady_timer drain_poll(control);
  std::chrono::steady_clock::time_point deadline;
  std::function<void()> poll = [&] {
    if (rt.open_connections() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (rt.open_connections() > 0)
        spdlog::warn("drain deadline reached with {} connections open; exiting", rt.open_connections());
      else
        spdlog::info("drained; exiting");
      admin_listener->stop();
      control.stop();
      return;
    }
    drain_poll.expires_after(std::chrono::milliseconds(50));
    drain_poll.async_wait([&](boost::system::error_code ec) {
      if (!ec) poll();
    });
  };
  std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (rt.draining()) {
      spdlog::warn("second signal ({}): exiting now", sig);
      spdlog::default_logger()->flush();
      ::_exit(1);
    }
    spdlog::info("signal {}: draining {} connections over {} s (readyz now 503)", sig, rt.open_connections(),
                 cfg.server.drain_seconds);
    rt.begin_drain();
    // Closing handshakes need a moment past the last scheduled close.
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(cfg.server.drain_seconds + 3);
    poll();
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);

  control.run();
  rt.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"swarmcoord: the coordinator of a peer-to-peer content delivery network for the web.\n"
               "Speaks the WebTorrent tracker protocol and its own native protocol over WebSocket."};
  std::string config_file;
  std::vector<std::string> sets;
  bool print_config = false;
  app.add_option("-c,--config", config_file, "TOML configuration file (see config/swarmcoord.toml)");
  app.add_option("--set", sets, "Override a key: section.key=value, value in TOML syntax (repeatable)")
      ->take_all()
      ->expected(1)
      ->allow_extra_args(false);
  app.add_flag("--print-config", print_config, "Print the effective configuration as TOML and exit");
  app.set_version_flag("--version", std::string("swarmcoord ") + version);

  // swarmcoord manifest FILE --block-size N [--url URL]: the SHA-256 of every block, as JSON.
  auto* manifest_cmd = app.add_subcommand("manifest", "Print the block manifest (SHA-256 per block) of a file as JSON");
  std::string manifest_file;
  std::uint32_t manifest_block_size = 65536;
  std::optional<std::string> manifest_url;
  manifest_cmd->add_option("file", manifest_file, "The resource, as the origin serves it")->required();
  manifest_cmd->add_option("--block-size", manifest_block_size, "Block size in bytes (as in join.block_size)")
      ->capture_default_str();
  manifest_cmd->add_option("--url", manifest_url, "The resource URL, recorded in the manifest");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "swarmcoord: " << e.what() << " (see --help)\n";
    return 2;
  }

  if (*manifest_cmd) {
    std::ifstream in(manifest_file, std::ios::binary);
    if (!in) {
      std::cerr << "swarmcoord: manifest: cannot read " << manifest_file << "\n";
      return 2;
    }
    try {
      std::cout << manifest::make(in, manifest_block_size, manifest_url) << "\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "swarmcoord: manifest: " << manifest_file << ": " << e.what() << "\n";
      return 2;
    }
  }

  std::signal(SIGPIPE, SIG_IGN);
  config::sources sources{config_file, sets, config::environment_overrides()};
  config::config cfg;
  try {
    if (print_config) {
      std::cout << config::print(sources);
      return 0;
    }
    cfg = config::load(sources);
  } catch (const config::config_error& e) {
    std::cerr << "swarmcoord: config: " << e.what() << "\n";
    return 2;
  }

  setup_logging(cfg);
  try {
    return serve(cfg);
  } catch (const config::config_error& e) {
    spdlog::critical("config: {}", e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return 1;
  }
}
