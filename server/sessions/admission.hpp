#pragma once
// Who may open a WebSocket connection, decided once at the upgrade:
// - server.allowed_origins: the web pages (by Origin header) that may use the coordinator,
//   exact ("https://www.example.com") or by subdomain ("https://*.example.com"); clients
//   without an Origin (native peers, Node) by server.allow_missing_origin.
// - auth.*: a connection token, an HS256 JWT on the URL (?token=...) that a site's backend
//   signs with auth.token_secret: `exp` (required), `sub` (the site, for logs), `swarms`
//   (optional: URL patterns for native swarms, 40-hex info_hashes for WebTorrent ones).
// Pure and thread-safe (read-only after construction); tokens are verified with libjwt.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/binary_id.hpp"
#include "server/config/config.hpp"
#include "server/metrics/counters.hpp"
#include "server/sessions/address_limits.hpp"

namespace swarmcoord::sessions {

// What a connection's token allows it; a connection without a token gets an empty grant.
struct grant {
  std::string subject;              // the token's sub, "" without one
  bool restricted = false;          // the token listed swarms: only those
  std::vector<std::string> urls;    // exact URLs, or prefixes when they end in '*'
  std::vector<protocol::binary_id> info_hashes;

  bool allows_url(std::string_view swarm_url) const;
  bool allows_info_hash(const protocol::binary_id& info_hash) const;
};

using metrics::upgrade_refusal;

// What a protocol session is handed by admission: its token's grant, and the per-address
// budget its swarms draw on (shared with every other connection of its address).
struct admitted {
  grant token;
  address_limits* per_address = nullptr;       // null: no per-address budget (unit tests)
  metrics::limit_counters* limited = nullptr;  // where refusals are counted

  // One more swarm for the connection's address; false, counted, when it has none left.
  bool take_swarm(const swarm::ip_address& client) const {
    if (!per_address || per_address->add_swarm(client)) return true;
    if (limited) limited->count(metrics::limit::swarms_per_address);
    return false;
  }
  void give_back_swarms(const swarm::ip_address& client, std::size_t n) const {
    if (per_address) per_address->remove_swarms(client, static_cast<std::uint32_t>(n));
  }
};

class admission {
 public:
  explicit admission(const config::config& cfg);

  // origin: the Origin header, nullopt when absent.
  std::optional<upgrade_refusal> check_origin(std::optional<std::string_view> origin) const;
  // token: the ?token= query parameter, nullopt when absent. now_unix: seconds since 1970.
  std::variant<grant, upgrade_refusal> check_token(std::optional<std::string_view> token,
                                                   std::int64_t now_unix) const;

 private:
  struct origin_rule {
    std::string scheme_sep;  // "https://"
    std::string host;        // "www.example.com", or "example.com" for a wildcard
    std::string port;        // ":8443" or ""
    bool subdomains = false;
  };
  std::vector<origin_rule> origins_;
  bool allow_missing_origin_;
  bool required_;
  std::vector<std::string> secrets_;  // the current one first
};

// The value of one query parameter of a request target ("/?a=1&token=x"), undecoded.
std::optional<std::string_view> query_parameter(std::string_view target, std::string_view name);

}  // namespace swarmcoord::sessions
