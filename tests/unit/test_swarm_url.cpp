// Swarm keys: resource URLs normalized so that spellings of one URL meet in one swarm.
#include <catch2/catch.hpp>

#include <string>
#include <utility>

#include "protocol/swarm_url.hpp"

namespace {
using swarmcoord::protocol::max_swarm_url_bytes;
using swarmcoord::protocol::normalize_swarm_url;
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
