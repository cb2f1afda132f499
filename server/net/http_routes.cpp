#include "server/net/http_routes.hpp"

#include <algorithm>

#include <openssl/crypto.h>

#include <nlohmann/json.hpp>

#include "server/metrics/metrics.hpp"
#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace {

constexpr std::size_t top_swarm_count = 10;

bool health_route(std::string_view path, const runtime& rt, respond_fn& respond) {
  if (path == "/healthz") {
    respond(200, "text/plain", "ok\n");
    return true;
  }
  if (path == "/readyz") {
    if (rt.draining()) respond(503, "text/plain", "draining\n");
    else respond(200, "text/plain", "ready\n");
    return true;
  }
  return false;
}

struct stats_part {
  metrics::worker_figures figures;
  std::vector<swarm::swarm_summary> top;
  std::vector<swarm::mesh_swarm_summary> top_native;
};

}  // namespace

std::string_view path_of(std::string_view target) {
  return target.substr(0, target.find('?'));
}

void public_routes::handle(std::string_view path, boost::asio::any_io_executor, respond_fn respond) {
  if (!health_route(path, rt_, respond)) respond(404, "text/plain", "not found\n");
}

admin_routes::admin_routes(runtime& rt, metrics::exporter& exporter, std::string version)
    : rt_(rt), exporter_(exporter), version_(std::move(version)) {}

bool admin_routes::authorized(std::string_view path, std::string_view authorization) const {
  const auto& token = rt_.cfg().admin.token;
  if (token.empty() || path == "/healthz" || path == "/readyz") return true;
  constexpr std::string_view scheme = "Bearer ";
  if (authorization.size() != scheme.size() + token.size() || authorization.substr(0, scheme.size()) != scheme)
    return false;
  // Constant time: the comparison must not tell how much of a guess was right.
  return CRYPTO_memcmp(authorization.data() + scheme.size(), token.data(), token.size()) == 0;
}

std::shared_ptr<std::size_t> admin_routes::take_slot() {
  if (*open_ >= rt_.cfg().admin.max_connections) return nullptr;
  ++*open_;
  // The slot is given back when the last holder lets go of it.
  auto count = open_;
  return std::shared_ptr<std::size_t>(count.get(), [count](std::size_t* n) { --*n; });
}

void admin_routes::handle(std::string_view path, boost::asio::any_io_executor ex, respond_fn respond) {
  if (health_route(path, rt_, respond)) return;
  if (path == "/metrics") {
    rt_.gather<metrics::worker_figures>(
        ex, [](worker& w) { return w.figures(); },
        [this, respond](std::vector<metrics::worker_figures> parts) {
          metrics::worker_figures total;
          for (const auto& p : parts) metrics::accumulate(total, p);
          respond(200, "text/plain; version=0.0.4", exporter_.render(total));
        });
    return;
  }
  if (path == "/stats") {
    rt_.gather<stats_part>(
        ex,
        [](worker& w) {
          return stats_part{w.figures(), w.tracker().top_swarms(top_swarm_count), w.mesh().top_swarms(top_swarm_count)};
        },
        [this, respond](std::vector<stats_part> parts) {
          metrics::worker_figures total;
          // Both protocols' swarms in one list, largest first.
          std::vector<std::pair<std::uint32_t, nlohmann::json>> top;
          for (auto& p : parts) {
            metrics::accumulate(total, p.figures);
            for (const auto& s : p.top)
              top.emplace_back(s.seeders + s.leechers,
                               nlohmann::json{{"protocol", "webtorrent"}, {"info_hash", s.info_hash.hex()},
                                              {"peers", s.seeders + s.leechers}, {"seeders", s.seeders},
                                              {"leechers", s.leechers}});
            for (const auto& s : p.top_native) {
              const double moved = static_cast<double>(s.p2p_bytes + s.http_bytes);
              top.emplace_back(s.peers, nlohmann::json{{"protocol", "native"}, {"swarm", s.key},
                                                       {"peers", s.peers}, {"seeds", s.seeds}, {"blocks", s.blocks},
                                                       {"p2p_bytes", s.p2p_bytes}, {"http_bytes", s.http_bytes},
                                                       {"offload_ratio", moved > 0 ? s.p2p_bytes / moved : 0.0}});
            }
          }
          std::stable_sort(top.begin(), top.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
          if (top.size() > top_swarm_count) top.resize(top_swarm_count);
          const auto& connections = total.net.connections;
          nlohmann::json j;
          j["version"] = version_;
          j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now() - started_).count();
          j["draining"] = rt_.draining();
          j["workers"] = rt_.worker_count();
          j["connections"] = {{"webtorrent", connections[metrics::index_of(metrics::protocol::webtorrent)]},
                              {"native", connections[metrics::index_of(metrics::protocol::native)]}};
          j["swarms"] = total.tracker_totals.swarms + total.mesh_totals.swarms;
          j["peers"] = {{"seeders", total.tracker_totals.seeders + total.mesh_totals.seeds},
                        {"leechers", total.tracker_totals.leechers + total.mesh_totals.leechers}};
          auto& list = j["top_swarms"] = nlohmann::json::array();
          for (auto& [peers, entry] : top) list.push_back(std::move(entry));
          const double moved = static_cast<double>(total.mesh.http_bytes + total.mesh.p2p_bytes);
          j["offload_ratio"] = moved > 0 ? static_cast<double>(total.mesh.p2p_bytes) / moved : 0.0;
          respond(200, "application/json", j.dump(2) + "\n");
        });
    return;
  }
  respond(404, "text/plain", "not found\n");
}

}  // namespace swarmcoord::net
