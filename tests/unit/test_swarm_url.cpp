// Swarm keys: resource URLs normalized so that spellings of one URL meet in one swarm.
#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protocol/swarm_url.hpp"

#ifndef SWARMCOORD_SOURCE_DIR
#error "tests/CMakeLists.txt defines SWARMCOORD_SOURCE_DIR for unit_tests"
#endif

namespace {
using swarmcoord::protocol::max_swarm_url_bytes;
using swarmcoord::protocol::normalize_swarm_url;

// The property every caller relies on: a key the server hands out is accepted again, as itself
// (a client rejoins with it; two spellings that meet once stay together).
void require_refused_or_idempotent(const std::string& url) {
  INFO("\"" << url << "\"");
  auto key = normalize_swarm_url(url);
  if (!key) return;
  CHECK(key->size() <= max_swarm_url_bytes);
  auto again = normalize_swarm_url(*key);
  REQUIRE(again);
  CHECK(*again == *key);
}
}  // namespace

TEST_CASE("swarm url: normalization", "[swarm_url]") {
  const std::pair<const char*, const char*> cases[] = {
      // already normal
      {"https://cdn.example.com/video/seg-1.mp4", "https://cdn.example.com/video/seg-1.mp4"},
      {"http://cdn.example.com/a?b=c", "http://cdn.example.com/a?b=c"},
      // scheme and host lower-cased, path and query byte for byte
      {"HTTPS://CDN.Example.COM/Video/Seg-1.MP4", "https://cdn.example.com/Video/Seg-1.MP4"},
      {"HtTp://A.B/Q?X=Y&Z=%2F", "http://a.b/Q?X=Y&Z=%2F"},
      {"https://a.example/%7Euser/../x/./y//z?q=%41#F", "https://a.example/%7Euser/../x/./y//z?q=%41"},
      // the scheme's default port dropped, other ports kept
      {"http://a.example:80/x", "http://a.example/x"},
      {"https://a.example:443/x", "https://a.example/x"},
      {"http://a.example:443/x", "http://a.example:443/x"},
      {"https://a.example:80/x", "https://a.example:80/x"},
      {"https://a.example:8443/x", "https://a.example:8443/x"},
      {"http://a.example:65535/", "http://a.example:65535/"},
      {"http://a.example:0080/x", "http://a.example/x"},
      {"http://a.example:08080/x", "http://a.example:8080/x"},
      {"http://a.example:/x", "http://a.example/x"},
      // fragment dropped
      {"https://a.example/x#t=10", "https://a.example/x"},
      {"https://a.example/x?y#z", "https://a.example/x?y"},
      {"https://a.example/x#z?y", "https://a.example/x"},
      {"https://a.example#z", "https://a.example/"},
      {"https://a.example/#", "https://a.example/"},
      // empty path made "/"
      {"https://a.example", "https://a.example/"},
      {"https://a.example:443", "https://a.example/"},
      {"https://a.example?x=1", "https://a.example/?x=1"},
      {"https://a.example:444?x=1", "https://a.example:444/?x=1"},
      // IPv4 and IPv6 literals
      {"http://192.0.2.1:80/x", "http://192.0.2.1/x"},
      {"http://192.0.2.1:8080/x", "http://192.0.2.1:8080/x"},
      {"http://[2001:DB8::1]/x", "http://[2001:db8::1]/x"},
      {"http://[2001:db8::1]:80/x", "http://[2001:db8::1]/x"},
      {"https://[::1]:8443", "https://[::1]:8443/"},
      // '@' outside the authority is just a character
      {"https://a.example/user@x?to=a@b", "https://a.example/user@x?to=a@b"},
  };
  for (const auto& [in, want] : cases) {
    INFO(in);
    auto got = normalize_swarm_url(in);
    REQUIRE(got);
    CHECK(*got == want);
    // Normalizing is idempotent.
    auto again = normalize_swarm_url(*got);
    REQUIRE(again);
    CHECK(*again == *got);
  }
}

TEST_CASE("swarm url: spellings of one resource meet, different resources don't", "[swarm_url]") {
  const char* same[] = {"https://cdn.example/v.mp4", "HTTPS://CDN.EXAMPLE/v.mp4", "https://cdn.example:443/v.mp4",
                        "https://Cdn.Example:443/v.mp4#t=5", "hTTps://cdn.example/v.mp4#"};
  for (const char* s : same) {
    INFO(s);
    CHECK(normalize_swarm_url(s) == normalize_swarm_url(same[0]));
  }
  const char* different[] = {"https://cdn.example/V.mp4", "http://cdn.example/v.mp4", "https://cdn.example:8443/v.mp4",
                             "https://cdn.example/v.mp4?", "https://cdn.example/v.mp4?a", "https://cdn.example//v.mp4",
                             "https://cdn.example/v%2Emp4", "https://cdn2.example/v.mp4"};
  for (const char* s : different) {
    INFO(s);
    auto key = normalize_swarm_url(s);
    REQUIRE(key);
    CHECK(key != normalize_swarm_url(same[0]));
  }
}

TEST_CASE("swarm url: rejections", "[swarm_url]") {
  const std::string rejected[] = {
      "",
      // not http(s)
      "ftp://a.example/x", "ws://a.example/x", "wss://a.example/x", "file:///etc/passwd", "javascript:alert(1)",
      "data:text/plain,hi", "httpx://a.example/", "a.example/x", "//a.example/x", "http:/a.example/x", "http:a.example",
      "/relative/path", "http//a.example/",
      // no host
      "http://", "http:///x", "https://?x", "http://:80/x", "https://#frag",
      // user info
      "http://user@a.example/", "http://user:pw@a.example/x", "https://@a.example/", "https://a.example@evil.example/",
      // bad ports
      "http://a.example:65536/", "http://a.example:99999/", "http://a.example:123456/", "http://a.example:8x/",
      "http://a.example:-1/", "http://a.example:+80/", "http://a.example:0x50/", "http://a.example: 80/",
      // broken IPv6 literals
      "http://[::1/x", "http://[::1", "http://[::1]x/", "http://[::1]:abc/", "http://[]/", "http://[]:80/",
      // control characters and spaces anywhere, even in the fragment
      "http://a example/", "http://a.example/a b", " http://a.example/", "http://a.example/\t", "http://a.example/\n",
      "http://a.example/x?\r", std::string("http://a.example/\0x", 19), "http://a.example/\x7f", "http://a.example/#a b",
      "http://a.example/\x1b[0m",
  };
  for (const auto& url : rejected) {
    INFO("\"" << url << "\"");
    CHECK_FALSE(normalize_swarm_url(url));
  }
}

TEST_CASE("swarm url: length limit", "[swarm_url]") {
  const std::string prefix = "https://a.example/";
  const std::string at_limit = prefix + std::string(max_swarm_url_bytes - prefix.size(), 'x');
  REQUIRE(at_limit.size() == max_swarm_url_bytes);
  auto ok = normalize_swarm_url(at_limit);
  REQUIRE(ok);
  CHECK(*ok == at_limit);
  CHECK_FALSE(normalize_swarm_url(at_limit + "x"));
  // The limit is on the input: a long fragment does not sneak a long URL in.
  CHECK_FALSE(normalize_swarm_url(prefix + "#" + std::string(max_swarm_url_bytes, 'f')));
  CHECK_FALSE(normalize_swarm_url(std::string(1 << 20, 'h')));
}

TEST_CASE("swarm url: non-ASCII bytes in path and query are kept, never crash", "[swarm_url]") {
  auto key = normalize_swarm_url("https://a.example/caf\xc3\xa9?q=\xe2\x82\xac");
  REQUIRE(key);
  CHECK(*key == "https://a.example/caf\xc3\xa9?q=\xe2\x82\xac");
  // Every byte after a valid prefix: either a key or nullopt, and a key again normalizes to itself.
  for (int b = 0; b < 256; ++b) {
    std::string url = "HTTP://A.example:80/";
    url += static_cast<char>(b);
    auto k = normalize_swarm_url(url);
    if (b <= 0x20 || b == 0x7f) {
      CHECK_FALSE(k);
    } else {
      INFO("byte " << b);
      REQUIRE(k);
      CHECK(k->rfind("http://a.example/", 0) == 0);
      CHECK(normalize_swarm_url(*k) == k);
    }
  }
}

// The table the browser client's swarmKey() is held to as well (tests/node/swarm-urls.test.mjs).
TEST_CASE("swarm url: the shared table of tricky URLs", "[swarm_url]") {
  std::ifstream in(std::string(SWARMCOORD_SOURCE_DIR) + "/tests/fixtures/swarm-urls.json");
  REQUIRE(in);
  const auto cases = nlohmann::json::parse(in).at("cases");
  std::size_t accepted = 0, refused = 0;
  for (const auto& c : cases) {
    const auto url = c.at("url").get<std::string>();
    const auto want = c.at("key").is_null() ? std::nullopt : std::optional(c.at("key").get<std::string>());
    INFO(c.at("why").get<std::string>() << ": \"" << url << "\"");
    CHECK(normalize_swarm_url(url) == want);
    if (want) {
      CHECK(normalize_swarm_url(*want) == want);
      ++accepted;
    } else {
      ++refused;
    }
  }
  CHECK(accepted >= 30);
  CHECK(refused >= 30);
}

TEST_CASE("swarm url: every key normalizes to itself, whatever the authority", "[swarm_url]") {
  // Hosts and ports that are valid, nearly valid, or carry the separators a naive split trips on.
  const char* hosts[] = {"a", "A.B", "a:b", "h:", ":", "a::b", "", "[::1]", "[::1]:", "[0:0::1]", "[::1", "::1]",
                         "1.2.3.4", "1.2.3.4:", "127.1", "a.1", "a%41", "a@b", "[::1]@a", "a[b]", "xn--e", "a.", "."};
  const char* ports[] = {"", ":", ":0", ":80", ":443", ":0443", ":8080", ":b", "::", ":80:80", ":99999", ":[::1]"};
  const char* tails[] = {"", "/", "?", "/x", "?q", "#f", "/x?y#z", "//", "/:443", "?:80"};
  std::size_t keys = 0;
  for (const char* scheme : {"http://", "HTTPS://"})
    for (const char* host : hosts)
      for (const char* port : ports)
        for (const char* tail : tails) {
          const std::string url = std::string(scheme) + host + port + tail;
          require_refused_or_idempotent(url);
          keys += normalize_swarm_url(url).has_value();
        }
  CHECK(keys > 500);  // the grid is not all refusals
}

TEST_CASE("swarm url: a key never grows past the length limit", "[swarm_url]") {
  // Normalizing can lengthen a URL (an empty path becomes "/", a "::" standing for one zero
  // group is written out); a key over the limit would be refused when the client sends it back.
  const std::string host_only = "https://" + std::string(max_swarm_url_bytes - 8, 'h');
  REQUIRE(host_only.size() == max_swarm_url_bytes);
  CHECK_FALSE(normalize_swarm_url(host_only));
  require_refused_or_idempotent(host_only);

  const std::string query_only = "https://a.example?" + std::string(max_swarm_url_bytes - 18, 'q');
  REQUIRE(query_only.size() == max_swarm_url_bytes);
  CHECK_FALSE(normalize_swarm_url(query_only));
  CHECK(normalize_swarm_url(query_only.substr(0, query_only.size() - 1)) ==
        "https://a.example/?" + std::string(max_swarm_url_bytes - 19, 'q'));

  const std::string ipv6 = "http://[1::2:3:4:5:6:7]/";
  const std::string ipv6_long = ipv6 + std::string(max_swarm_url_bytes - ipv6.size(), 'p');
  CHECK_FALSE(normalize_swarm_url(ipv6_long));
  for (std::size_t n = max_swarm_url_bytes - 40; n <= max_swarm_url_bytes + 1; ++n) {
    require_refused_or_idempotent("https://a.example" + std::string(n - 17, 'x'));
    require_refused_or_idempotent(ipv6 + std::string(n - ipv6.size(), 'p'));
  }
}
