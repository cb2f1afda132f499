// Admission at the WebSocket upgrade (sessions/admission): allowed origins, connection tokens
// (HS256 JWTs minted here with libjwt, as a site's backend would) and what their grants allow.
#include <catch2/catch.hpp>

#include <jwt.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "server/sessions/admission.hpp"

namespace {

namespace ss = swarmcoord::sessions;
namespace cfg = swarmcoord::config;
using swarmcoord::metrics::upgrade_refusal;

constexpr std::int64_t now = 1'800'000'000;

cfg::config with(std::vector<std::string> sets) { return cfg::load({"", std::move(sets), {}}); }

// A token as a site's backend mints it; alg JWT_ALG_NONE makes an unsigned one.
std::string mint(const std::string& secret, std::int64_t exp, const char* grants_json = nullptr,
                 jwt_alg_t alg = JWT_ALG_HS256) {
  jwt_t* raw = nullptr;
  REQUIRE(jwt_new(&raw) == 0);
  std::unique_ptr<jwt_t, void (*)(jwt_t*)> jwt(raw, jwt_free);
  if (exp) REQUIRE(jwt_add_grant_int(raw, "exp", static_cast<long>(exp)) == 0);
  if (grants_json) REQUIRE(jwt_add_grants_json(raw, grants_json) == 0);
  if (alg == JWT_ALG_NONE) REQUIRE(jwt_set_alg(raw, JWT_ALG_NONE, nullptr, 0) == 0);
  else REQUIRE(jwt_set_alg(raw, alg, reinterpret_cast<const unsigned char*>(secret.data()), static_cast<int>(secret.size())) == 0);
  char* text = jwt_encode_str(raw);
  REQUIRE(text);
  std::string out(text);
  std::free(text);
  return out;
}

upgrade_refusal refusal_of(const std::variant<ss::grant, upgrade_refusal>& v) {
  REQUIRE(std::holds_alternative<upgrade_refusal>(v));
  return std::get<upgrade_refusal>(v);
}
ss::grant grant_of(const std::variant<ss::grant, upgrade_refusal>& v) {
  REQUIRE(std::holds_alternative<ss::grant>(v));
  return std::get<ss::grant>(v);
}

}  // namespace

TEST_CASE("admission: any origin when allowed_origins is empty", "[admission]") {
  ss::admission a(with({}));
  CHECK_FALSE(a.check_origin("https://evil.example"));
  CHECK_FALSE(a.check_origin("null"));
  CHECK_FALSE(a.check_origin(std::nullopt));
}

TEST_CASE("admission: exact origins and subdomain patterns", "[admission]") {
  ss::admission a(with({R"(server.allowed_origins=["https://www.example.com", "https://*.cdn.example.net", "http://localhost:8080"])"}));
  CHECK_FALSE(a.check_origin("https://www.example.com"));
  CHECK_FALSE(a.check_origin("HTTPS://WWW.EXAMPLE.COM"));  // origins compare case-insensitively
  CHECK_FALSE(a.check_origin("https://a.cdn.example.net"));
  CHECK_FALSE(a.check_origin("https://a.b.cdn.example.net"));
  CHECK_FALSE(a.check_origin("http://localhost:8080"));
  CHECK(a.check_origin("https://evil.example") == upgrade_refusal::origin);
  CHECK(a.check_origin("null") == upgrade_refusal::origin);
  CHECK(a.check_origin("http://www.example.com") == upgrade_refusal::origin);        // scheme
  CHECK(a.check_origin("https://www.example.com:8443") == upgrade_refusal::origin);  // port
  CHECK(a.check_origin("https://cdn.example.net") == upgrade_refusal::origin);       // *. needs a label
  CHECK(a.check_origin("https://evilcdn.example.net") == upgrade_refusal::origin);   // not a subdomain
  CHECK(a.check_origin("https://www.example.com.evil.example") == upgrade_refusal::origin);
  CHECK(a.check_origin("http://localhost") == upgrade_refusal::origin);
  CHECK(a.check_origin("http://localhost:80801") == upgrade_refusal::origin);
  // No Origin: native peers and Node clients, allowed unless switched off.
  CHECK_FALSE(a.check_origin(std::nullopt));
  ss::admission strict(with({R"(server.allowed_origins=["https://www.example.com"])", "server.allow_missing_origin=false"}));
  CHECK(strict.check_origin(std::nullopt) == upgrade_refusal::missing_origin);
}

TEST_CASE("admission: the config refuses what is not an origin", "[admission][config]") {
  for (const char* bad : {"www.example.com", "https://", "https://example.com/path", "https://*", "https://a.*.com",
                          "ht tp://example.com", "https://user@example.com"}) {
    INFO(bad);
    CHECK_THROWS_AS(with({std::string("server.allowed_origins=[\"") + bad + "\"]"}), cfg::config_error);
  }
  CHECK_THROWS_WITH(with({"auth.required=true"}), Catch::Contains("auth.token_secret is empty"));
}

TEST_CASE("admission: tokens are optional by default, required with auth.required", "[admission]") {
  ss::admission open(with({}));
  CHECK(grant_of(open.check_token(std::nullopt, now)).subject.empty());
  // A token nobody can check is refused, not ignored.
  CHECK(refusal_of(open.check_token(mint("s3cret", now + 60), now)) == upgrade_refusal::token_invalid);
  ss::admission required(with({"auth.required=true", R"(auth.token_secret="s3cret")"}));
  CHECK(refusal_of(required.check_token(std::nullopt, now)) == upgrade_refusal::token_missing);
  CHECK(refusal_of(required.check_token("", now)) == upgrade_refusal::token_missing);
  CHECK_FALSE(grant_of(required.check_token(mint("s3cret", now + 60), now)).restricted);
}

TEST_CASE("admission: a token must be HS256 with this secret (or the previous one) and not expired", "[admission]") {
  ss::admission a(with({R"(auth.token_secret="new-secret")", R"(auth.previous_secret="old-secret")"}));
  CHECK(grant_of(a.check_token(mint("new-secret", now + 60, R"({"sub":"shop.example"})"), now)).subject == "shop.example");
  CHECK(grant_of(a.check_token(mint("old-secret", now + 60), now)).subject.empty());
  CHECK(refusal_of(a.check_token(mint("other-secret", now + 60), now)) == upgrade_refusal::token_invalid);
  CHECK(refusal_of(a.check_token(mint("new-secret", now), now)) == upgrade_refusal::token_expired);
  CHECK(refusal_of(a.check_token(mint("new-secret", 0), now)) == upgrade_refusal::token_invalid);  // no exp
  CHECK(refusal_of(a.check_token(mint("", now + 60, nullptr, JWT_ALG_NONE), now)) == upgrade_refusal::token_invalid);
  CHECK(refusal_of(a.check_token(mint("new-secret", now + 60, nullptr, JWT_ALG_HS512), now)) ==
        upgrade_refusal::token_invalid);
  CHECK(refusal_of(a.check_token("not.a.token", now)) == upgrade_refusal::token_invalid);
  CHECK(refusal_of(a.check_token(std::string(5000, 'a'), now)) == upgrade_refusal::token_invalid);
  // A signature over another payload: the payload swapped for one with a later exp.
  const auto good = mint("new-secret", now + 60);
  const auto forged_payload = mint("attacker", now + 99999);
  const auto forged = good.substr(0, good.find('.')) + forged_payload.substr(forged_payload.find('.'), forged_payload.rfind('.') - forged_payload.find('.')) + good.substr(good.rfind('.'));
  CHECK(refusal_of(a.check_token(forged, now)) == upgrade_refusal::token_invalid);
}

TEST_CASE("admission: the swarms a token lists: URL patterns and info_hashes", "[admission]") {
  ss::admission a(with({R"(auth.token_secret="k")"}));
  const auto g = grant_of(a.check_token(
      mint("k", now + 60,
           R"({"swarms":["https://cdn.example.com/videos/*","https://cdn.example.com/logo.png","0123456789ABCDEF0123456789abcdef01234567"]})"),
      now));
  CHECK(g.restricted);
  CHECK(g.allows_url("https://cdn.example.com/videos/a/seg-1.ts"));
  CHECK(g.allows_url("https://cdn.example.com/logo.png"));
  CHECK_FALSE(g.allows_url("https://cdn.example.com/logo.png2"));
  CHECK_FALSE(g.allows_url("https://cdn.example.com/other.ts"));
  swarmcoord::protocol::binary_id ih;  // not listed
  ih.bytes.fill(0x42);
  swarmcoord::protocol::binary_id listed;  // 0123456789abcdef repeated
  for (std::size_t i = 0; i < listed.bytes.size(); ++i) listed.bytes[i] = static_cast<std::uint8_t>(0x01 + 0x22 * (i % 8));
  CHECK(g.allows_info_hash(listed));
  CHECK_FALSE(g.allows_info_hash(ih));
  // Without a swarms claim, everything.
  const auto any = grant_of(a.check_token(mint("k", now + 60), now));
  CHECK(any.allows_url("https://anything.example/x"));
  CHECK(any.allows_info_hash(ih));
  // A swarms claim that is not a list of strings is a bad token.
  CHECK(refusal_of(a.check_token(mint("k", now + 60, R"({"swarms":"https://cdn.example.com/*"})"), now)) ==
        upgrade_refusal::token_invalid);
  CHECK(refusal_of(a.check_token(mint("k", now + 60, R"({"swarms":[1]})"), now)) == upgrade_refusal::token_invalid);
}

TEST_CASE("admission: the token query parameter", "[admission]") {
  CHECK(ss::query_parameter("/?token=abc", "token") == "abc");
  CHECK(ss::query_parameter("/v1/ws?x=1&token=a.b.c&y=2", "token") == "a.b.c");
  CHECK(ss::query_parameter("/v1/ws?xtoken=1", "token") == std::nullopt);
  CHECK(ss::query_parameter("/v1/ws?token", "token") == "");
  CHECK(ss::query_parameter("/v1/ws", "token") == std::nullopt);
}
