#include "server/config/config_schema.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "server/config/config.hpp"

namespace swarmcoord::config::schema_detail {
namespace {

std::string check_listen(const toml::node& n);
std::string check_cidrs(const toml::node& n);
std::string check_level(const toml::node& n);
std::string check_ice_urls(const toml::node& n);
std::string check_sites(const toml::node& n);
std::string check_readable_file(const toml::node& n);
std::string check_format(const toml::node& n);
std::string check_origins(const toml::node& n);

constexpr std::int64_t gib = 1024ll * 1024 * 1024;

}  // namespace

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
      {"server", "header_timeout_s", kind::integer, "10",
       "Time a new connection has to send its whole HTTP request (a WebSocket upgrade or a health\n"
       "check), TLS handshake included; then it is closed. Real clients send it at once.", 1, 300},
      {"server", "allowed_origins", kind::string_list, "[]",
       "Web pages allowed to open WebSocket connections, by their Origin header: exact origins\n"
       "(\"https://www.example.com\") or one-level-or-deeper wildcards (\"https://*.example.com\").\n"
       "Others get HTTP 403. Empty: any origin.", 0, 0, check_origins},
      {"server", "allow_missing_origin", kind::boolean, "true",
       "Whether upgrades without an Origin header (native peers, Node clients; never a browser)\n"
       "are accepted when allowed_origins is set.", 0, 0},
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
      {"admin", "max_connections", kind::integer, "64",
       "Admin connections open at once at most (Prometheus needs one or two); more are closed.", 1, 100000},
      {"admin", "token", kind::string, R"("")",
       "When set, /metrics and /stats want \"Authorization: Bearer <token>\" (health checks stay\n"
       "open). Prometheus: authorization.credentials in its scrape config."},
      {"auth", "required", kind::boolean, "false",
       "Whether every WebSocket connection needs a signed token (?token=<JWT> on its URL).\n"
       "A token that is present is always checked, required or not."},
      {"auth", "token_secret", kind::string, R"("")",
       "HS256 secret that connection tokens are signed with (a site's backend mints them:\n"
       "claims exp, optional sub naming the site, optional swarms [patterns])."},
      {"auth", "previous_secret", kind::string, R"("")",
       "The secret before token_secret, still accepted while tokens signed with it live (rotation)."},
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
      {"tracker", "reannounce_grace_s", kind::integer, "90",
       "A peer_id belongs to the connection that announced it into a swarm while that connection\n"
       "is open and re-announces it within interval_s plus this; until then another connection's\n"
       "announce of it is refused (peer_id_in_use). After it (or once the owner closes) a client\n"
       "that reconnected takes its peer_id back. The grace covers late timers of background tabs.",
       0, 86400},
      {"tracker", "max_peers_per_connection", kind::integer, "100",
       "(info_hash, peer_id) pairs one connection may hold at once, across every worker; further ones\n"
       "get too_many_peers.", 1, 100000},
      {"tracker", "max_swarms", kind::integer, "500000",
       "WebTorrent swarms (info_hashes with a peer) at most, across every worker; an announce\n"
       "that would open one more gets \"failure reason\" (server_full), existing swarms go on.\n"
       "About 1.5 KB each with one peer.", 1, 100'000'000},
      {"tracker", "max_scrape_all", kind::integer, "0",
       "Swarms listed at most by a scrape without info_hash. 0 (the default) answers it with no\n"
       "swarm at once: no real client needs it, and a 19-byte request could fetch a large list.", 0, 1'000'000},
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
       "a count per block (1 byte, 2 from 256 members, 4 from 65,536), each member blocks/8\n"
       "bytes of bitfield: its block map, which max_swarm_memory_mb bounds.", 1, 1 << 20},
      {"limits", "max_swarms", kind::integer, "200000",
       "Native swarms at most, across every worker; a join that would open one more gets\n"
       "server_full, existing swarms go on. About 1.7 KB each with one member, besides its\n"
       "block map.", 1, 100'000'000},
      {"limits", "max_swarm_memory_mb", kind::integer, "512",
       "MiB that the block maps of all native swarms may hold together (per-block counts and\n"
       "members' bitfields; a 1 GiB resource in 64 KiB blocks takes 18 KiB with one member and\n"
       "2 KiB more per member); a join that would need more gets server_full.", 1, 1'000'000},
      {"limits", "http_sessions_per_address", kind::integer, "64",
       "Connections from one client address (IPv4, or IPv6 /64) still in their HTTP phase at\n"
       "most; more are closed at once. Trusted proxies are exempt (their clients count below).", 1, 1'000'000},
      {"limits", "connections_per_address", kind::integer, "512",
       "Open WebSocket connections from one client address at most; more get HTTP 429.\n"
       "Generous for a NAT with hundreds of users; one machine rarely needs more than a few.", 1, 10'000'000},
      {"limits", "connects_per_second_per_address", kind::integer, "50",
       "New connections per second from one client address (a bucket as deep as the burst below).",
       1, 1'000'000},
      {"limits", "connect_burst_per_address", kind::integer, "200",
       "New connections from one client address accepted at once before the rate applies.", 1, 1'000'000},
      {"limits", "swarms_per_address", kind::integer, "4096",
       "Swarms that the connections of one client address may be in at once (WebTorrent\n"
       "info_hash/peer_id pairs and native memberships together).", 1, 100'000'000},
      {"signal", "max_bytes", kind::integer, "16384",
       "Largest signal.data relayed (an SDP with full ICE fits in a few KiB).", 256, 1 << 20},
      {"signal", "unlinked_grace_s", kind::integer, "30",
       "Signals are relayed only between neighbours, and for this long after their link is\n"
       "removed (offers, answers and ICE candidates of a link being torn down may be on their\n"
       "way); else the sender gets not_linked.", 0, 600},
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

namespace {
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
}  // namespace

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

namespace {

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

// "https://www.example.com", "http://localhost:8080" or "https://*.example.com": a scheme,
// "://", a host (its first label may be "*") and an optional port; nothing after.
std::string check_origins(const toml::node& n) {
  for (const auto& e : *n.as_array()) {
    auto o = e.value<std::string>().value_or("");
    auto bad = [&] { return "\"" + o + "\" is not an origin (scheme://host[:port], host may start with *.)"; };
    auto sep = o.find("://");
    if (sep == std::string::npos || sep == 0) return bad();
    auto host = std::string_view(o).substr(sep + 3);
    if (host.rfind("*.", 0) == 0) host.remove_prefix(2);
    if (host.empty() || host.find_first_of("/?#*@ ") != std::string_view::npos) return bad();
    for (char c : o.substr(0, sep))
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') return bad();
  }
  return {};
}

}  // namespace

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

}  // namespace swarmcoord::config::schema_detail
