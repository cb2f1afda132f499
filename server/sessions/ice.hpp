#pragma once
// welcome.ice_servers for a native peer: the configured STUN servers, and TURN servers with
// either static credentials or, with ice.turn_secret, per-peer credentials of coturn's
// use-auth-secret (TURN REST) scheme: username "<unix expiry>:<peer_id>", credential
// base64(HMAC-SHA1(secret, username)). Thread-safe (pure function of its inputs).
#include <cstdint>
#include <string>

#include "protocol/json_text.hpp"
#include "server/config/config.hpp"

namespace swarmcoord::sessions {

std::string turn_rest_credential(const std::string& secret, const std::string& username);

// A JSON array, ready for nv::welcome::ice_servers.
protocol::json_text ice_servers_for(const config::config& cfg, const std::string& peer_id, std::int64_t unix_now);

}  // namespace swarmcoord::sessions
