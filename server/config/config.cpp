#include "server/config/config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <toml++/toml.h>

extern char** environ;

namespace swarmcoord::config {
namespace {

enum class kind { integer, string, boolean, string_list };

struct key_spec {
  const char* section;
  const char* key;
  kind type;
  const char* default_toml;  // the default as a TOML value literal
  const char* doc;
  std::int64_t min = 0, max = 0;                  // integers
  std::string (*check)(const toml::node&) = nullptr;  // extra validation; "" when fine
};

std::string check_listen(const toml::node& n);
std::string check_cidrs(const toml::node& n);
std::string check_level(const toml::node& n);
std::string check_ice_urls(const toml::node& n);
std::string check_sites(const toml::node& n);
std::string check_readable_file(const toml::node& n);
std::string check_format(const toml::node& n);

constexpr std::int64_t gib = 1024ll * 1024 * 1024;

const std::vector<key_spec>& schema() {
  static const std::vector<key_spec> specs = {
      {"server", "listen", kind::string, R"("0.0.0.0:8000")",
       "Public listener, HOST:PORT ([V6]:PORT for IPv6). WebSocket on / and /announce\n"
       "(WebTorrent), /v1/ws (native); GET /healthz and /readyz. Port 0 picks a free port.",
       0, 0, check_listen},
      {"server", "threads", kind::integer, "0",
       "Worker threads, each owning its connections and a shard of the swarms. 0 = one per core.",
       0, swarm::max_workers},
      {"server", "tls_cert", kind::string, R"("")",
       "PEM certificate chain; with tls_key, the public listener speaks TLS (wss://) only."},
      {"server", "tls_key", kind::string, R"("")", "PEM private key for tls_cert."},
      {"server", "max_message_bytes", kind::integer, "65536",
       "Largest WebSocket message accepted; a larger one closes the connection with 1009.",
       1024, 16 * 1024 * 1024},
      {"server", "max_connections", kind::integer, "100000",
       "Open WebSocket connections at most; further upgrades get HTTP 503.", 1, 10'000'000},
      {"server", "max_http_sessions", kind::integer, "4096",
       "Plain HTTP connections on the public port (health checks, upgrades in progress) at\n"
       "most; more are closed at once. Bounds what slow or half-sent requests can hold.", 16, 1'000'000},
      {"server", "idle_timeout_s", kind::integer, "300",
       "Close a connection from which nothing (not even a pong) arrived for this long; the\n"
       "server pings at half of it, so live but quiet clients stay.", 5, 86400},
      {"server", "drain_seconds", kind::integer, "10",
       "On SIGTERM/SIGINT, connections are closed (1001 going away) spread over this long.",
       0, 3600},
      {"server", "max_write_queue_bytes", kind::integer, "1048576",
       "Bytes queued for one slow client at most (each queued frame counts 64 bytes besides its\n"
       "own); over it the client is disconnected.",
       65536, gib},
      {"server", "max_messages_per_second", kind::integer, "200",
       "Messages one connection may send per second (every frame counts: fragments and pings\n"
       "too; bursts of as many allowed); beyond it the server stops reading from it for a while\n"
       "(TCP backpressure), so that one client can't monopolise a worker. Real clients send a few\n"
       "a minute.", 1, 1'000'000},
      {"server", "max_protocol_errors", kind::integer, "50",
       "Invalid messages in a row tolerated from one connection before it is closed (1008).",
       1, 1'000'000},
      {"server", "trusted_proxies", kind::string_list, "[]",
       "CIDRs of load balancers whose X-Forwarded-For / Forwarded headers name the client,\n"
       "e.g. [\"10.0.0.0/8\"]. Other peers' headers are ignored.",
       0, 0, check_cidrs},
      {"admin", "listen", kind::string, R"("127.0.0.1:9100")",
       "Admin listener: /metrics (Prometheus), /healthz, /readyz, /stats (JSON). Keep it private.",
       0, 0, check_listen},
      {"log", "level", kind::string, R"("info")",
       "trace, debug, info, warn, error, critical or off.", 0, 0, check_level},
      {"log", "format", kind::string, R"("text")", "text, or json (one object per line).", 0, 0,
       check_format},
      {"tracker", "interval_s", kind::integer, "120",
       "Re-announce interval told to WebTorrent clients.", 10, 86400},
      {"tracker", "max_offers", kind::integer, "10",
       "Offers relayed per announce at most (the reference relays up to 82).", 1, 100},
      {"tracker", "offer_ttl_s", kind::integer, "120",
       "An answer is relayed only for an offer relayed to its sender within this long.", 1, 3600},
      {"tracker", "peer_ttl_s", kind::integer, "300",
       "A peer that has not announced for this long leaves its swarm.", 10, 86400},
      {"tracker", "max_peers_per_connection", kind::integer, "100",
       "(info_hash, peer_id) pairs one connection may hold at once; further ones get too_many_peers.", 1, 100000},
      {"tracker", "max_scrape_all", kind::integer, "1000",
       "Swarms listed at most by a scrape without info_hash.", 0, 1'000'000},
      {"mesh", "max_neighbors", kind::integer, "8",
       "Neighbours assigned to a native peer at most (a client may ask for fewer in hello).", 1, 64},
      {"mesh", "replan_ms", kind::integer, "500",
       "How often peers whose blocks changed are re-planned (have updates are applied lazily).", 50, 60000},
      {"mesh", "candidates", kind::integer, "64",
       "Candidates scored per planning step at most; bounds the cost of a join in a huge swarm.", 8, 4096},
      {"limits", "max_swarms_per_connection", kind::integer, "16",
       "Swarms one native connection may be a member of at once.", 1, 10000},
      {"limits", "max_blocks", kind::integer, "16384",
       "Blocks per resource at most (size / block_size): 1 GiB in 64 KiB blocks. Each swarm keeps\n"
       "4 bytes of availability per block, each member blocks/8 bytes of bitfield.", 1, 1 << 20},
      {"limits", "max_swarms", kind::integer, "100000",
       "Native swarms per worker at most; a join that would open one more is refused.", 1, 100'000'000},
      {"signal", "max_bytes", kind::integer, "16384",
       "Largest signal.data relayed (an SDP with full ICE fits in a few KiB).", 256, 1 << 20},
      {"ice", "stun_urls", kind::string_list, "[]",
       "STUN servers handed to native peers in welcome.ice_servers, e.g. [\"stun:stun.example.org:3478\"].",
       0, 0, check_ice_urls},
      {"ice", "turn_urls", kind::string_list, "[]",
       "TURN servers, e.g. [\"turn:turn.example.org:3478?transport=udp\"], with the credentials below.",
       0, 0, check_ice_urls},
      {"ice", "turn_secret", kind::string, R"("")",
       "Shared secret of coturn's use-auth-secret: each peer gets its own short-lived TURN\n"
       "credentials (username \"<expiry>:<peer_id>\", HMAC-SHA1 password). Overrides the static ones."},
      {"ice", "turn_ttl_s", kind::integer, "86400", "Lifetime of TURN credentials made from turn_secret.", 60,
       30 * 86400},
      {"ice", "turn_username", kind::string, R"("")", "Static TURN username (without turn_secret)."},
      {"ice", "turn_credential", kind::string, R"("")", "Static TURN password (without turn_secret)."},
      {"locality", "sites", kind::string_list, "[]",
       "Operator sites, best locality tier: [\"10.1.0.0/16=berlin\", \"2001:db8::/48=berlin\"].",
       0, 0, check_sites},
      {"locality", "sites_file", kind::string, R"("")",
       "A file of more sites, one \"CIDR=name\" a line (# comments allowed).", 0, 0, check_readable_file},
      {"locality", "geoip_db", kind::string, R"("")",
       "MaxMind-format database (.mmdb) giving country (country.iso_code) and/or ASN\n"
       "(autonomous_system_number) per address, e.g. GeoLite2-Country.mmdb.", 0, 0, check_readable_file},
      {"locality", "asn_db", kind::string, R"("")",
       "A second MaxMind-format database, for when ASN and country come in separate files.", 0, 0,
       check_readable_file},
  };
  return specs;
}

std::string full_name(const key_spec& k) { return std::string(k.section) + "." + k.key; }

const key_spec* find_key(std::string_view section, std::string_view key) {
  for (const auto& k : schema())
    if (section == k.section && key == k.key) return &k;
  return nullptr;
}

std::string shown(const toml::node& n) {
  std::ostringstream os;
  n.visit([&](const auto& v) {
    if constexpr (toml::is_string<decltype(v)>) os << '"' << v.get() << '"';
    else os << v;
  });
  std::string s = os.str();
  if (s.size() > 60) s = s.substr(0, 60) + "…";
  return s;
}

// A value as TOML source, for print(): complete and escaped (shown() shortens, for messages).
std::string toml_text(const toml::node& n) {
  if (const auto* s = n.as_string()) {
    std::string out = "\"";
    for (char c : s->get()) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(static_cast<unsigned char>(c)));
        out += buf;
      } else {
        out += c;
      }
    }
    return out + "\"";
  }
  if (const auto* a = n.as_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < a->size(); ++i) {
      if (i) out += ", ";
      out += toml_text(*a->get(i));
    }
    return out + "]";
  }
  std::ostringstream os;
  n.visit([&](const auto& v) { os << v; });
  return os.str();
}

std::string check_listen(const toml::node& n) {
  auto s = n.value<std::string>().value_or("");
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return "must be HOST:PORT";
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!swarm::ip_address::parse(host)) return "host must be an IP address";
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
      std::stoi(port) > 65535)
    return "port must be 0..65535";
  return {};
}

std::string check_cidrs(const toml::node& n) {
  for (const auto& e : *n.as_array())
    if (!swarm::cidr::parse(e.value<std::string>().value_or("")))
      return "\"" + e.value<std::string>().value_or("") + "\" is not a CIDR range";
  return {};
}

std::string check_ice_urls(const toml::node& n) {
  for (const auto& e : *n.as_array()) {
    auto url = e.value<std::string>().value_or("");
    if (url.rfind("stun:", 0) != 0 && url.rfind("stuns:", 0) != 0 && url.rfind("turn:", 0) != 0 &&
        url.rfind("turns:", 0) != 0)
      return "\"" + url + "\" is not a stun:, stuns:, turn: or turns: URL";
  }
  return {};
}

std::string check_sites(const toml::node& n) {
  for (const auto& e : *n.as_array())
    if (!parse_site(e.value<std::string>().value_or("")))
      return "\"" + e.value<std::string>().value_or("") + "\" is not CIDR=name";
  return {};
}

std::string check_readable_file(const toml::node& n) {
  auto path = n.value<std::string>().value_or("");
  if (path.empty()) return {};
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return std::filesystem::exists(path, ec) ? "not a regular file: " + path : "no such file: " + path;
  std::ifstream in(path);
  if (!in) return "cannot read " + path;
  return {};
}

std::string check_choice(const toml::node& n, std::initializer_list<std::string_view> choices) {
  auto s = n.value<std::string>().value_or("");
  for (auto c : choices)
    if (s == c) return {};
  std::string all;
  for (auto c : choices) all += (all.empty() ? "" : ", ") + std::string(c);
  return "must be one of " + all;
}
std::string check_level(const toml::node& n) {
  return check_choice(n, {"trace", "debug", "info", "warn", "error", "critical", "off"});
}
std::string check_format(const toml::node& n) { return check_choice(n, {"text", "json"}); }

void validate(const key_spec& k, const toml::node& n) {
  auto fail = [&](const std::string& why) {
    throw config_error(full_name(k) + ": " + why + " (got " + shown(n) + ")");
  };
  switch (k.type) {
    case kind::integer: {
      if (!n.is_integer()) fail("must be an integer");
      auto v = n.value<std::int64_t>().value_or(0);
      if (v < k.min || v > k.max)
        fail("must be between " + std::to_string(k.min) + " and " + std::to_string(k.max));
      break;
    }
    case kind::string:
      if (!n.is_string()) fail("must be a string");
      break;
    case kind::boolean:
      if (!n.is_boolean()) fail("must be true or false");
      break;
    case kind::string_list:
      if (!n.is_array() || !n.as_array()->is_homogeneous(toml::node_type::string))
        if (!(n.is_array() && n.as_array()->empty())) fail("must be a list of strings");
      break;
  }
  if (k.check)
    if (auto why = k.check(n); !why.empty()) fail(why);
}

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
  c.admin.listen = to_listen(str("admin", "listen"));
  c.log.level = str("log", "level");
  c.log.format = str("log", "format");
  c.tracker.interval_s = static_cast<std::uint32_t>(i("tracker", "interval_s"));
  c.tracker.max_offers = static_cast<std::size_t>(i("tracker", "max_offers"));
  c.tracker.offer_ttl_ms = i("tracker", "offer_ttl_s") * 1000;
  c.tracker.peer_ttl_ms = i("tracker", "peer_ttl_s") * 1000;
  c.limits.max_peers_per_connection = static_cast<std::size_t>(i("tracker", "max_peers_per_connection"));
  c.tracker.max_scrape_all = static_cast<std::size_t>(i("tracker", "max_scrape_all"));
  c.mesh.max_neighbors = static_cast<std::uint32_t>(i("mesh", "max_neighbors"));
  c.mesh.replan_ms = static_cast<unsigned>(i("mesh", "replan_ms"));
  c.mesh.planner.max_candidates = static_cast<std::size_t>(i("mesh", "candidates"));
  c.mesh.planner.max_blocks = static_cast<std::uint32_t>(i("limits", "max_blocks"));
  c.mesh.planner.max_swarms = static_cast<std::size_t>(i("limits", "max_swarms"));
  c.limits.max_swarms_per_connection = static_cast<std::size_t>(i("limits", "max_swarms_per_connection"));
  c.signal.max_bytes = static_cast<std::size_t>(i("signal", "max_bytes"));
  auto strings = [&](const char* sec, const char* k) {
    std::vector<std::string> out;
    if (const auto* list = t[sec][k].as_array())
      for (const auto& e : *list) out.push_back(*e.value<std::string>());
    return out;
  };
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
