#include "server/sessions/ice.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include "protocol/bitfield.hpp"

namespace swarmcoord::sessions {

std::string turn_rest_credential(const std::string& secret, const std::string& username) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(username.data()), username.size(), digest, &length);
  return protocol::base64_encode(std::string_view(reinterpret_cast<const char*>(digest), length));
}

protocol::json_text ice_servers_for(const config::config& cfg, const std::string& peer_id, std::int64_t unix_now) {
  auto servers = nlohmann::json::array();
  if (!cfg.ice.stun_urls.empty()) servers.push_back({{"urls", cfg.ice.stun_urls}});
  if (!cfg.ice.turn_urls.empty()) {
    nlohmann::json turn = {{"urls", cfg.ice.turn_urls}};
    if (!cfg.ice.turn_secret.empty()) {
      const std::string username = std::to_string(unix_now + cfg.ice.turn_ttl_s) + ":" + peer_id;
      turn["username"] = username;
      turn["credential"] = turn_rest_credential(cfg.ice.turn_secret, username);
    } else if (!cfg.ice.turn_username.empty()) {
      turn["username"] = cfg.ice.turn_username;
      turn["credential"] = cfg.ice.turn_credential;
    }
    servers.push_back(std::move(turn));
  }
  // Configured strings may hold anything: invalid UTF-8 becomes U+FFFD, the text stays JSON.
  return {servers.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

}  // namespace swarmcoord::sessions
