#pragma once
// swarmcoord's configuration: one schema of keys (type, default, range, documentation) from
// which the TOML file, environment overrides (SWARMCOORD_<SECTION>_<KEY>) and --set
// section.key=value are validated, and from which --print-config writes documented TOML.
// Precedence, lowest first: defaults, file, environment, --set.
// Not thread-safe while loading; the resulting config is an immutable value.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "server/swarm/address.hpp"
#include "server/swarm/mesh.hpp"
#include "server/swarm/swarm_budget.hpp"
#include "server/swarm/tracker.hpp"

namespace swarmcoord::config {

// Thrown for any bad key or value; what() is one line that names the key and why.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct listen_address {
  std::string host;  // an IP literal
  std::uint16_t port = 0;
  std::string to_string() const;
};

struct config {
  struct {
    listen_address listen;
    unsigned threads = 0;  // resolved: never 0 after load()
    std::string tls_cert;
    std::string tls_key;
    std::size_t max_message_bytes = 0;
    std::size_t max_connections = 0;
    std::size_t max_http_sessions = 0;
    unsigned idle_timeout_s = 0;
    unsigned drain_seconds = 0;
    std::size_t max_write_queue_bytes = 0;
    unsigned max_protocol_errors = 0;
    unsigned max_messages_per_second = 0;
    std::vector<swarm::cidr> trusted_proxies;
    unsigned header_timeout_s = 0;
    std::vector<std::string> allowed_origins;  // empty: any
    bool allow_missing_origin = true;
  } server;
  struct {
    listen_address listen;
    std::size_t max_connections = 0;
    std::string token;  // empty: no Authorization needed
  } admin;
  struct {
    bool required = false;
    std::string token_secret;
    std::string previous_secret;
  } auth;
  struct {
    std::string level;
    std::string format;
  } log;
  swarm::tracker_config tracker;
  struct {
    std::uint32_t max_neighbors = 0;
    unsigned replan_ms = 0;
    swarm::mesh_config planner;
  } mesh;
  struct {
    std::size_t max_swarms_per_connection = 0;   // native swarms one connection is in
    std::size_t max_peers_per_connection = 0;    // tracker.max_peers_per_connection
    std::uint32_t http_sessions_per_address = 0;
    std::uint32_t connections_per_address = 0;
    std::uint32_t connects_per_second_per_address = 0;
    std::uint32_t connect_burst_per_address = 0;
    std::uint32_t swarms_per_address = 0;
    // tracker.max_swarms, limits.max_swarms, limits.max_swarm_memory_mb: for all workers
    swarm::budget_limits swarms;
  } limits;
  struct {
    std::size_t max_bytes = 0;
  } signal;
  struct {
    std::vector<std::string> stun_urls;
    std::vector<std::string> turn_urls;
    std::string turn_secret;
    unsigned turn_ttl_s = 0;
    std::string turn_username;
    std::string turn_credential;
  } ice;
  struct {
    std::vector<std::pair<swarm::cidr, std::string>> sites;  // from sites and sites_file
    std::string geoip_db;
    std::string asn_db;
  } locality;
};

// "10.1.0.0/16=berlin" -> (range, name); nullopt when malformed.
std::optional<std::pair<swarm::cidr, std::string>> parse_site(std::string_view entry);

struct sources {
  std::string file;                                       // empty: defaults only
  std::vector<std::string> sets;                          // "section.key=value"
  std::vector<std::pair<std::string, std::string>> env;   // SWARMCOORD_* variables
};

// Reads the process environment's SWARMCOORD_* variables.
std::vector<std::pair<std::string, std::string>> environment_overrides();

config load(const sources& from);

// The effective configuration as TOML, each key preceded by its documentation.
std::string print(const sources& from);

}  // namespace swarmcoord::config
