#include "server/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <toml++/toml.h>

#include "server/config/config_schema.hpp"

extern char** environ;

namespace swarmcoord::config {
namespace {
using namespace schema_detail;

// A --set or environment value: TOML when it parses as a value, else a bare string.
toml::table parse_value(std::string_view text) {
  try {
    auto t = toml::parse("v = " + std::string(text));
    return t;
  } catch (const toml::parse_error&) {
    toml::table t;
    t.insert("v", std::string(text));
    return t;
  }
}

void put(toml::table& effective, const key_spec& k, const toml::node& value) {
  validate(k, value);
  auto* section = effective[k.section].as_table();
  section->insert_or_assign(k.key, value);
}

toml::table build(const sources& from) {
  toml::table effective;
  for (const auto& k : schema()) {
    if (!effective.contains(k.section)) effective.insert(k.section, toml::table{});
    auto v = toml::parse(std::string("v = ") + k.default_toml);
    put(effective, k, *v.get("v"));
  }
  if (!from.file.empty()) {
    toml::table file;
    if (std::error_code ec; !std::filesystem::is_regular_file(from.file, ec))
      throw config_error(from.file + ": config file not found or not a regular file");
    try {
      file = toml::parse_file(from.file);
    } catch (const toml::parse_error& e) {
      const auto& where = e.source().begin;
      throw config_error(from.file + ":" + std::to_string(where.line) + ": " +
                         std::string(e.description()));
    }
    for (const auto& [section, node] : file) {
      const auto* table = node.as_table();
      const bool known = std::any_of(schema().begin(), schema().end(),
                                     [&](const key_spec& k) { return section.str() == k.section; });
      if (!table || (!known && table->empty()))
        throw config_error(std::string(section.str()) + ": unknown section (in " + from.file + ")");
      for (const auto& [key, value] : *table) {
        const auto* k = find_key(section.str(), key.str());
        if (!k)
          throw config_error(std::string(section.str()) + "." + std::string(key.str()) +
                             ": unknown key (in " + from.file + ")");
        put(effective, *k, value);
      }
    }
  }
  for (const auto& [name, value] : from.env) {
    // SWARMCOORD_SERVER_MAX_MESSAGE_BYTES -> server.max_message_bytes
    std::string rest = name.substr(std::string_view("SWARMCOORD_").size());
    std::transform(rest.begin(), rest.end(), rest.begin(), ::tolower);
    auto underscore = rest.find('_');
    const key_spec* k = underscore == std::string::npos
                            ? nullptr
                            : find_key(rest.substr(0, underscore), rest.substr(underscore + 1));
    if (!k) throw config_error(name + ": unknown key (environment variable)");
    auto parsed = parse_value(value);
    try {
      put(effective, *k, *parsed.get("v"));
    } catch (const config_error& e) {
      throw config_error(std::string(e.what()) + " (from " + name + ")");
    }
  }
  for (const auto& set : from.sets) {
    auto eq = set.find('=');
    auto dot = set.find('.');
    if (eq == std::string::npos || dot == std::string::npos || dot > eq)
      throw config_error(set + ": --set takes section.key=value");
    const auto* k = find_key(set.substr(0, dot), set.substr(dot + 1, eq - dot - 1));
    if (!k) throw config_error(set.substr(0, eq) + ": unknown key (--set)");
    auto parsed = parse_value(std::string_view(set).substr(eq + 1));
    put(effective, *k, *parsed.get("v"));
  }
  return effective;
}

listen_address to_listen(const std::string& s) {
  auto colon = s.rfind(':');
  listen_address a;
  a.host = s.substr(0, colon);
  if (a.host.size() >= 2 && a.host.front() == '[') a.host = a.host.substr(1, a.host.size() - 2);
  a.port = static_cast<std::uint16_t>(std::stoi(s.substr(colon + 1)));
  return a;
}

}  // namespace

std::string listen_address::to_string() const {
  return host.find(':') == std::string::npos ? host + ":" + std::to_string(port)
                                             : "[" + host + "]:" + std::to_string(port);
}

std::optional<std::pair<swarm::cidr, std::string>> parse_site(std::string_view entry) {
  auto eq = entry.find('=');
  if (eq == std::string_view::npos || eq + 1 >= entry.size()) return std::nullopt;
  auto range = swarm::cidr::parse(entry.substr(0, eq));
  if (!range) return std::nullopt;
  return std::pair{*range, std::string(entry.substr(eq + 1))};
}

std::vector<std::pair<std::string, std::string>> environment_overrides() {
  std::vector<std::pair<std::string, std::string>> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    if (entry.substr(0, 11) != "SWARMCOORD_") continue;
    auto eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace_back(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  std::sort(out.begin(), out.end());
  return out;
}

config load(const sources& from) {
  const toml::table t = build(from);
  auto i = [&](const char* s, const char* k) { return t[s][k].value<std::int64_t>().value_or(0); };
  auto str = [&](const char* s, const char* k) { return t[s][k].value<std::string>().value_or(""); };
  config c;
  c.server.listen = to_listen(str("server", "listen"));
  c.server.threads = static_cast<unsigned>(i("server", "threads"));
  // Connections record the shards they touched in a 64-bit mask: 64 workers at most.
  if (c.server.threads == 0) c.server.threads = std::clamp(std::thread::hardware_concurrency(), 1u, swarm::max_workers);
  c.server.tls_cert = str("server", "tls_cert");
  c.server.tls_key = str("server", "tls_key");
  if (c.server.tls_cert.empty() != c.server.tls_key.empty())
    throw config_error("server.tls_cert: tls_cert and tls_key go together (one is empty)");
  c.server.max_message_bytes = static_cast<std::size_t>(i("server", "max_message_bytes"));
  c.server.max_connections = static_cast<std::size_t>(i("server", "max_connections"));
  c.server.max_http_sessions = static_cast<std::size_t>(i("server", "max_http_sessions"));
  c.server.idle_timeout_s = static_cast<unsigned>(i("server", "idle_timeout_s"));
  c.server.drain_seconds = static_cast<unsigned>(i("server", "drain_seconds"));
  c.server.max_write_queue_bytes = static_cast<std::size_t>(i("server", "max_write_queue_bytes"));
  c.server.max_protocol_errors = static_cast<unsigned>(i("server", "max_protocol_errors"));
  c.server.max_messages_per_second = static_cast<unsigned>(i("server", "max_messages_per_second"));
  if (const auto* list = t["server"]["trusted_proxies"].as_array())
    for (const auto& e : *list) c.server.trusted_proxies.push_back(*swarm::cidr::parse(*e.value<std::string>()));
  c.server.header_timeout_s = static_cast<unsigned>(i("server", "header_timeout_s"));
  c.server.allow_missing_origin = t["server"]["allow_missing_origin"].value<bool>().value_or(true);
  c.admin.listen = to_listen(str("admin", "listen"));
  c.admin.max_connections = static_cast<std::size_t>(i("admin", "max_connections"));
  c.admin.token = str("admin", "token");
  c.auth.required = t["auth"]["required"].value<bool>().value_or(false);
  c.auth.token_secret = str("auth", "token_secret");
  c.auth.previous_secret = str("auth", "previous_secret");
  if (c.auth.required && c.auth.token_secret.empty())
    throw config_error("auth.required: tokens are required but auth.token_secret is empty");
  if (!c.auth.previous_secret.empty() && c.auth.token_secret.empty())
    throw config_error("auth.previous_secret: set only beside auth.token_secret (rotation)");
  c.log.level = str("log", "level");
  c.log.format = str("log", "format");
  c.tracker.interval_s = static_cast<std::uint32_t>(i("tracker", "interval_s"));
  c.tracker.max_offers = static_cast<std::size_t>(i("tracker", "max_offers"));
  c.tracker.offer_ttl_ms = i("tracker", "offer_ttl_s") * 1000;
  c.tracker.peer_ttl_ms = i("tracker", "peer_ttl_s") * 1000;
  c.tracker.reannounce_grace_ms = i("tracker", "reannounce_grace_s") * 1000;
  c.limits.max_peers_per_connection = static_cast<std::size_t>(i("tracker", "max_peers_per_connection"));
  c.tracker.max_scrape_all = static_cast<std::size_t>(i("tracker", "max_scrape_all"));
  c.mesh.max_neighbors = static_cast<std::uint32_t>(i("mesh", "max_neighbors"));
  c.mesh.replan_ms = static_cast<unsigned>(i("mesh", "replan_ms"));
  c.mesh.planner.max_candidates = static_cast<std::size_t>(i("mesh", "candidates"));
  c.mesh.planner.max_blocks = static_cast<std::uint32_t>(i("limits", "max_blocks"));
  c.limits.swarms.webtorrent_swarms = static_cast<std::size_t>(i("tracker", "max_swarms"));
  c.limits.swarms.native_swarms = static_cast<std::size_t>(i("limits", "max_swarms"));
  c.limits.swarms.block_map_bytes = static_cast<std::size_t>(i("limits", "max_swarm_memory_mb")) << 20;
  c.limits.max_swarms_per_connection = static_cast<std::size_t>(i("limits", "max_swarms_per_connection"));
  auto u32 = [&](const char* k) { return static_cast<std::uint32_t>(i("limits", k)); };
  c.limits.http_sessions_per_address = u32("http_sessions_per_address");
  c.limits.connections_per_address = u32("connections_per_address");
  c.limits.connects_per_second_per_address = u32("connects_per_second_per_address");
  c.limits.connect_burst_per_address = u32("connect_burst_per_address");
  c.limits.swarms_per_address = u32("swarms_per_address");
  c.signal.max_bytes = static_cast<std::size_t>(i("signal", "max_bytes"));
  c.mesh.planner.unlinked_grace_ms = i("signal", "unlinked_grace_s") * 1000;
  auto strings = [&](const char* sec, const char* k) {
    std::vector<std::string> out;
    if (const auto* list = t[sec][k].as_array())
      for (const auto& e : *list) out.push_back(*e.value<std::string>());
    return out;
  };
  c.server.allowed_origins = strings("server", "allowed_origins");
  c.ice.stun_urls = strings("ice", "stun_urls");
  c.ice.turn_urls = strings("ice", "turn_urls");
  c.ice.turn_secret = str("ice", "turn_secret");
  c.ice.turn_ttl_s = static_cast<unsigned>(i("ice", "turn_ttl_s"));
  c.ice.turn_username = str("ice", "turn_username");
  c.ice.turn_credential = str("ice", "turn_credential");
  for (const auto& entry : strings("locality", "sites")) c.locality.sites.push_back(*parse_site(entry));
  if (auto file = str("locality", "sites_file"); !file.empty()) {
    std::ifstream in(file);
    std::size_t line_no = 0;
    for (std::string line; std::getline(in, line);) {
      ++line_no;
      line = line.substr(0, line.find('#'));
      line.erase(0, line.find_first_not_of(" \t\r"));
      line.erase(line.find_last_not_of(" \t\r") + 1);
      if (line.empty()) continue;
      auto site = parse_site(line);
      if (!site)
        throw config_error("locality.sites_file: " + file + ":" + std::to_string(line_no) + ": \"" + line +
                           "\" is not CIDR=name");
      c.locality.sites.push_back(*site);
    }
  }
  c.locality.geoip_db = str("locality", "geoip_db");
  c.locality.asn_db = str("locality", "asn_db");
  return c;
}

std::string print(const sources& from) {
  const toml::table t = build(from);
  std::ostringstream os;
  os << "# swarmcoord configuration. Every key is shown with its effective value; a key left\n"
        "# out takes its default. Override any key with the environment variable\n"
        "# SWARMCOORD_<SECTION>_<KEY> or with --set section.key=value (value in TOML syntax).\n";
  std::string section;
  for (const auto& k : schema()) {
    if (section != k.section) {
      section = k.section;
      os << "\n[" << section << "]\n";
    }
    std::istringstream doc(k.doc);
    for (std::string line; std::getline(doc, line);) os << "# " << line << '\n';
    os << k.key << " = " << toml_text(*t[k.section][k.key].node()) << "\n";
  }
  return os.str();
}

}  // namespace swarmcoord::config
