#include "server/sessions/admission.hpp"

#include <jwt.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <memory>

#include <nlohmann/json.hpp>

namespace swarmcoord::sessions {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// A JWT is three base64url parts: anything longer than this is not one of ours.
constexpr std::size_t max_token_bytes = 4096;

struct jwt_deleter {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
struct free_deleter {
  void operator()(char* p) const { std::free(p); }
};

// "info_hashes" in a token are 40 hex digits, either case.
std::optional<protocol::binary_id> from_hex(std::string_view s) {
  if (s.size() != 2 * protocol::binary_id::size) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
  };
  protocol::binary_id id;
  for (std::size_t i = 0; i < protocol::binary_id::size; ++i) {
    const int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    id.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return id;
}

}  // namespace

bool grant::allows_url(std::string_view url) const {
  if (!restricted) return true;
  return std::any_of(urls.begin(), urls.end(), [&](const std::string& p) {
    if (!p.empty() && p.back() == '*') return url.substr(0, p.size() - 1) == std::string_view(p).substr(0, p.size() - 1);
    return url == p;
  });
}

bool grant::allows_info_hash(const protocol::binary_id& info_hash) const {
  return !restricted || std::find(info_hashes.begin(), info_hashes.end(), info_hash) != info_hashes.end();
}

admission::admission(const config::config& cfg)
    : allow_missing_origin_(cfg.server.allow_missing_origin), required_(cfg.auth.required) {
  for (const auto& o : cfg.server.allowed_origins) {
    // Validated by the config schema: scheme://host[:port], host maybe "*.".
    const auto sep = o.find("://") + 3;
    origin_rule r;
    r.scheme_sep = lower(o.substr(0, sep));
    std::string_view rest = std::string_view(o).substr(sep);
    if (rest.substr(0, 2) == "*.") {
      r.subdomains = true;
      rest.remove_prefix(2);
    }
    // A port follows the last ':' unless that is inside an IPv6 literal's brackets.
    const auto colon = rest.rfind(':');
    if (colon != std::string_view::npos && rest.find(']', colon) == std::string_view::npos) {
      r.port = std::string(rest.substr(colon));
      rest = rest.substr(0, colon);
    }
    r.host = lower(rest);
    origins_.push_back(std::move(r));
  }
  if (!cfg.auth.token_secret.empty()) secrets_.push_back(cfg.auth.token_secret);
  if (!cfg.auth.previous_secret.empty()) secrets_.push_back(cfg.auth.previous_secret);
}

std::optional<upgrade_refusal> admission::check_origin(std::optional<std::string_view> origin) const {
  if (origins_.empty()) return std::nullopt;
  if (!origin) return allow_missing_origin_ ? std::nullopt : std::optional(upgrade_refusal::missing_origin);
  // RFC 6454 serialises an origin as scheme "://" host [":" port]; browsers send it so, in
  // lower case. "null" (sandboxed frames, file: pages) matches no rule.
  const std::string o = lower(*origin);
  for (const auto& r : origins_) {
    if (o.rfind(r.scheme_sep, 0) != 0) continue;
    std::string_view rest = std::string_view(o).substr(r.scheme_sep.size());
    if (!r.port.empty()) {
      if (rest.size() <= r.port.size() || rest.substr(rest.size() - r.port.size()) != r.port) continue;
      rest.remove_suffix(r.port.size());
    } else if (rest.find(':') != std::string_view::npos && rest.back() != ']') {
      continue;  // a port the rule does not name
    }
    if (!r.subdomains) {
      if (rest == r.host) return std::nullopt;
    } else if (rest.size() > r.host.size() + 1 && rest.substr(rest.size() - r.host.size()) == r.host &&
               rest[rest.size() - r.host.size() - 1] == '.') {
      return std::nullopt;
    }
  }
  return upgrade_refusal::origin;
}

std::variant<grant, upgrade_refusal> admission::check_token(std::optional<std::string_view> token,
                                                            std::int64_t now_unix) const {
  if (!token || token->empty()) {
    if (required_) return upgrade_refusal::token_missing;
    return grant{};
  }
  // A token that nobody can check (no secret configured) is refused rather than ignored:
  // the operator who hands them out expects them to mean something.
  if (secrets_.empty() || token->size() > max_token_bytes) return upgrade_refusal::token_invalid;
  const std::string text(*token);
  std::unique_ptr<jwt_t, jwt_deleter> jwt;
  for (const auto& secret : secrets_) {
    jwt_t* decoded = nullptr;
    if (jwt_decode(&decoded, text.c_str(), reinterpret_cast<const unsigned char*>(secret.data()),
                   static_cast<int>(secret.size())) == 0) {
      jwt.reset(decoded);
      break;
    }
  }
  // HS256 only: a token naming "none" (or any other algorithm) is not verified by the secret.
  if (!jwt || jwt_get_alg(jwt.get()) != JWT_ALG_HS256) return upgrade_refusal::token_invalid;
  errno = 0;
  const long exp = jwt_get_grant_int(jwt.get(), "exp");
  if (errno == ENOENT || exp <= 0) return upgrade_refusal::token_invalid;
  if (exp <= now_unix) return upgrade_refusal::token_expired;
  grant g;
  if (const char* sub = jwt_get_grant(jwt.get(), "sub")) g.subject = std::string(sub).substr(0, 128);
  if (std::unique_ptr<char, free_deleter> swarms{jwt_get_grants_json(jwt.get(), "swarms")}) {
    auto list = nlohmann::json::parse(swarms.get(), nullptr, false);
    if (!list.is_array()) return upgrade_refusal::token_invalid;
    g.restricted = true;
    for (const auto& e : list) {
      if (!e.is_string()) return upgrade_refusal::token_invalid;
      const auto& s = e.get_ref<const std::string&>();
      if (auto ih = from_hex(s)) g.info_hashes.push_back(*ih);
      else g.urls.push_back(s);
    }
  }
  return g;
}

std::optional<std::string_view> query_parameter(std::string_view target, std::string_view name) {
  const auto q = target.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const auto pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace swarmcoord::sessions
