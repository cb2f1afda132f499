// Configuration: defaults, file, environment and --set precedence, validation, --print-config.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "server/config/config.hpp"

#ifndef SWARMCOORD_SOURCE_DIR
#error "tests/CMakeLists.txt defines SWARMCOORD_SOURCE_DIR for unit_tests"
#endif

namespace {

namespace cfg = swarmcoord::config;
namespace sw = swarmcoord::swarm;

// A TOML file that lives as long as the object.
class temp_file {
 public:
  explicit temp_file(std::string_view content) {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("swarmcoord-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".toml");
    std::ofstream out(path_, std::ios::binary);
    out << content;
    REQUIRE(out.good());
  }
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path_, ec);
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

cfg::sources from_file(const temp_file& f) {
  cfg::sources s;
  s.file = f.path();
  return s;
}
cfg::sources from_sets(std::vector<std::string> sets) {
  cfg::sources s;
  s.sets = std::move(sets);
  return s;
}
cfg::sources from_env(std::vector<std::pair<std::string, std::string>> env) {
  cfg::sources s;
  s.env = std::move(env);
  return s;
}

// The config_error message of loading these sources; fails the test if load() succeeds.
std::string load_error(const cfg::sources& s) {
  try {
    (void)cfg::load(s);
  } catch (const cfg::config_error& e) {
    std::string what = e.what();
    CHECK(what.find('\n') == std::string::npos);  // one line
    return what;
  }
  FAIL("load() accepted the configuration");
  return {};
}

void check_error_names(const cfg::sources& s, const std::string& key) {
  auto what = load_error(s);
  INFO("error: " << what);
  CHECK_THAT(what, Catch::Contains(key));
}

std::string file_error(std::string_view toml_text, const std::string& key) {
  temp_file f(toml_text);
  auto what = load_error(from_file(f));
  INFO("error: " << what);
  CHECK_THAT(what, Catch::Contains(key));
  return what;
}

void check_same_cidrs(const std::vector<sw::cidr>& a, const std::vector<sw::cidr>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].base == b[i].base);
    CHECK(a[i].prefix == b[i].prefix);
  }
}

void check_same(const cfg::config& a, const cfg::config& b) {
  CHECK(a.server.listen.host == b.server.listen.host);
  CHECK(a.server.listen.port == b.server.listen.port);
  CHECK(a.server.threads == b.server.threads);
  CHECK(a.server.tls_cert == b.server.tls_cert);
  CHECK(a.server.tls_key == b.server.tls_key);
  CHECK(a.server.max_message_bytes == b.server.max_message_bytes);
  CHECK(a.server.max_connections == b.server.max_connections);
  CHECK(a.server.idle_timeout_s == b.server.idle_timeout_s);
  CHECK(a.server.drain_seconds == b.server.drain_seconds);
  CHECK(a.server.max_write_queue_bytes == b.server.max_write_queue_bytes);
  CHECK(a.server.max_protocol_errors == b.server.max_protocol_errors);
  check_same_cidrs(a.server.trusted_proxies, b.server.trusted_proxies);
  CHECK(a.admin.listen.host == b.admin.listen.host);
  CHECK(a.admin.listen.port == b.admin.listen.port);
  CHECK(a.log.level == b.log.level);
  CHECK(a.log.format == b.log.format);
  CHECK(a.tracker.interval_s == b.tracker.interval_s);
  CHECK(a.tracker.max_offers == b.tracker.max_offers);
  CHECK(a.tracker.offer_ttl_ms == b.tracker.offer_ttl_ms);
  CHECK(a.tracker.peer_ttl_ms == b.tracker.peer_ttl_ms);
  CHECK(a.limits.max_peers_per_connection == b.limits.max_peers_per_connection);
  CHECK(a.tracker.max_scrape_all == b.tracker.max_scrape_all);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

sw::ip_address ip(std::string_view text) {
  auto a = sw::ip_address::parse(text);
  REQUIRE(a.has_value());
  return *a;
}

const char* const every_key[] = {
    "server.listen",          "server.threads",          "server.tls_cert",
    "server.tls_key",         "server.max_message_bytes", "server.max_connections",
    "server.idle_timeout_s",  "server.drain_seconds",    "server.max_write_queue_bytes",
    "server.max_protocol_errors", "server.trusted_proxies", "admin.listen",
    "log.level",              "log.format",              "tracker.interval_s",
    "tracker.max_offers",     "tracker.offer_ttl_s",     "tracker.peer_ttl_s",
    "tracker.max_peers_per_connection", "tracker.max_scrape_all",
};

}  // namespace

TEST_CASE("config defaults without a file are the documented ones") {
  auto c = cfg::load({});
  CHECK(c.server.listen.host == "0.0.0.0");
  CHECK(c.server.listen.port == 8000);
  CHECK(c.server.listen.to_string() == "0.0.0.0:8000");
  CHECK(c.server.threads >= 1);  // 0 = one per core, resolved by load()
  CHECK(c.server.tls_cert.empty());
  CHECK(c.server.tls_key.empty());
  CHECK(c.server.max_message_bytes == 65536);
  CHECK(c.server.max_connections == 100000);
  CHECK(c.server.idle_timeout_s == 300);
  CHECK(c.server.drain_seconds == 10);
  CHECK(c.server.max_write_queue_bytes == 1048576);
  CHECK(c.server.max_protocol_errors == 50);
  CHECK(c.server.trusted_proxies.empty());
  CHECK(c.admin.listen.host == "127.0.0.1");
  CHECK(c.admin.listen.port == 9100);
  CHECK(c.log.level == "info");
  CHECK(c.log.format == "text");
  CHECK(c.tracker.interval_s == 120);
  CHECK(c.tracker.max_offers == 10);
  CHECK(c.tracker.offer_ttl_ms == 120'000);
  CHECK(c.tracker.peer_ttl_ms == 300'000);
  CHECK(c.limits.max_peers_per_connection == 100);
  CHECK(c.tracker.max_scrape_all == 0);
}

TEST_CASE("config file values override the defaults, the rest stay default") {
  temp_file f(R"(
[server]
listen = "[::1]:9000"
threads = 3
max_message_bytes = 2048
trusted_proxies = ["10.0.0.0/8", "fd00::/8"]

[admin]
listen = "0.0.0.0:9200"

[log]
level = "debug"
format = "json"

[tracker]
max_offers = 5
offer_ttl_s = 30
peer_ttl_s = 600
)");
  auto c = cfg::load(from_file(f));
  CHECK(c.server.listen.host == "::1");
  CHECK(c.server.listen.port == 9000);
  CHECK(c.server.listen.to_string() == "[::1]:9000");
  CHECK(c.server.threads == 3);
  CHECK(c.server.max_message_bytes == 2048);
  REQUIRE(c.server.trusted_proxies.size() == 2);
  CHECK(c.server.trusted_proxies[0].contains(ip("10.200.1.1")));
  CHECK_FALSE(c.server.trusted_proxies[0].contains(ip("11.0.0.1")));
  CHECK(c.server.trusted_proxies[1].contains(ip("fd12::1")));
  CHECK(c.admin.listen.to_string() == "0.0.0.0:9200");
  CHECK(c.log.level == "debug");
  CHECK(c.log.format == "json");
  CHECK(c.tracker.max_offers == 5);
  CHECK(c.tracker.offer_ttl_ms == 30'000);
  CHECK(c.tracker.peer_ttl_ms == 600'000);
  // Untouched keys keep their defaults.
  CHECK(c.server.max_connections == 100000);
  CHECK(c.tracker.interval_s == 120);
  CHECK(c.tracker.max_scrape_all == 0);
}

TEST_CASE("config precedence: defaults < file < environment < --set") {
  temp_file f("[server]\nmax_message_bytes = 2048\nmax_connections = 500\n");
  cfg::sources s = from_file(f);
  CHECK(cfg::load(s).server.max_message_bytes == 2048);

  s.env = {{"SWARMCOORD_SERVER_MAX_MESSAGE_BYTES", "1024"}};
  CHECK(cfg::load(s).server.max_message_bytes == 1024);
  CHECK(cfg::load(s).server.max_connections == 500);  // file value not overridden stays

  s.sets = {"server.max_message_bytes=4096"};
  CHECK(cfg::load(s).server.max_message_bytes == 4096);

  // Each layer alone, on top of the defaults.
  CHECK(cfg::load(from_env({{"SWARMCOORD_SERVER_MAX_MESSAGE_BYTES", "8192"}})).server.max_message_bytes == 8192);
  CHECK(cfg::load(from_sets({"server.max_message_bytes=16384"})).server.max_message_bytes == 16384);

  // The last --set of a key wins.
  CHECK(cfg::load(from_sets({"tracker.max_offers=3", "tracker.max_offers=4"})).tracker.max_offers == 4);
}

TEST_CASE("config environment overrides reach every section") {
  auto c = cfg::load(from_env({{"SWARMCOORD_LOG_LEVEL", "warn"},
                               {"SWARMCOORD_TRACKER_MAX_PEERS_PER_CONNECTION", "7"},
                               {"SWARMCOORD_ADMIN_LISTEN", "127.0.0.1:9999"},
                               {"SWARMCOORD_SERVER_TRUSTED_PROXIES", R"(["192.168.0.0/16"])"}}));
  CHECK(c.log.level == "warn");
  CHECK(c.limits.max_peers_per_connection == 7);
  CHECK(c.admin.listen.port == 9999);
  REQUIRE(c.server.trusted_proxies.size() == 1);
  CHECK(c.server.trusted_proxies[0].contains(ip("192.168.44.1")));
}

TEST_CASE("config --set values are TOML, and a bare word is a string") {
  auto c = cfg::load(from_sets({
      R"(server.trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])",
      "log.level=debug",                     // bare word
      "server.listen=[::1]:8080",            // not TOML: taken as the string it is
      R"(admin.listen="127.0.0.1:9200")",    // a TOML string
      "server.tls_cert=/etc/ssl/a=b.pem",    // '=' in the value
      "server.tls_key=/etc/ssl/key.pem",
      "tracker.interval_s=60",
  }));
  REQUIRE(c.server.trusted_proxies.size() == 2);
  CHECK(c.server.trusted_proxies[0].contains(ip("10.1.2.3")));
  CHECK(c.server.trusted_proxies[1].contains(ip("2001:db8::77")));
  CHECK_FALSE(c.server.trusted_proxies[1].contains(ip("2001:db9::77")));
  CHECK(c.log.level == "debug");
  CHECK(c.server.listen.host == "::1");
  CHECK(c.server.listen.port == 8080);
  CHECK(c.admin.listen.port == 9200);
  CHECK(c.server.tls_cert == "/etc/ssl/a=b.pem");
  CHECK(c.server.tls_key == "/etc/ssl/key.pem");
  CHECK(c.tracker.interval_s == 60);
  CHECK(cfg::load(from_sets({"server.trusted_proxies=[]"})).server.trusted_proxies.empty());
}

TEST_CASE("config unknown keys are refused, naming the key") {
  file_error("[server]\nbogus = 1\n", "server.bogus");
  file_error("[nope]\nx = 1\n", "nope.x");
  file_error("x = 1\n", "x");
  file_error("[server.sub]\ny = 2\n", "server.sub");
  check_error_names(from_env({{"SWARMCOORD_SERVER_BOGUS", "1"}}), "SWARMCOORD_SERVER_BOGUS");
  check_error_names(from_env({{"SWARMCOORD_NOPE", "1"}}), "SWARMCOORD_NOPE");
  check_error_names(from_sets({"server.bogus=1"}), "server.bogus");
  check_error_names(from_sets({"bogus.threads=1"}), "bogus.threads");
  check_error_names(from_sets({"nodot=1"}), "nodot");
  check_error_names(from_sets({"server.threads"}), "server.threads");
}

TEST_CASE("config values of the wrong type are refused, naming the key") {
  file_error("[server]\nmax_message_bytes = \"big\"\n", "server.max_message_bytes");
  file_error("[server]\nmax_message_bytes = 2048.0\n", "server.max_message_bytes");
  file_error("[server]\nthreads = true\n", "server.threads");
  file_error("[server]\ntrusted_proxies = \"10.0.0.0/8\"\n", "server.trusted_proxies");
  file_error("[server]\ntrusted_proxies = [1, 2]\n", "server.trusted_proxies");
  file_error("[log]\nlevel = 5\n", "log.level");
  file_error("[server]\nlisten = 8000\n", "server.listen");
  check_error_names(from_sets({"tracker.max_offers=abc"}), "tracker.max_offers");
  check_error_names(from_sets({"server.trusted_proxies=10.0.0.0/8"}), "server.trusted_proxies");
  check_error_names(from_sets({R"(server.trusted_proxies="10.0.0.0/8")"}), "server.trusted_proxies");
  check_error_names(from_env({{"SWARMCOORD_LOG_LEVEL", "5"}}), "log.level");
  check_error_names(from_env({{"SWARMCOORD_SERVER_THREADS", "two"}}), "server.threads");
}

TEST_CASE("config integers out of range are refused, naming the key") {
  file_error("[server]\nmax_message_bytes = 100\n", "server.max_message_bytes");
  file_error("[server]\nmax_message_bytes = 16777217\n", "server.max_message_bytes");
  file_error("[server]\nthreads = 65\n", "server.threads");
  file_error("[server]\nthreads = -1\n", "server.threads");
  check_error_names(from_sets({"tracker.max_offers=0"}), "tracker.max_offers");
  check_error_names(from_sets({"tracker.max_offers=101"}), "tracker.max_offers");
  check_error_names(from_sets({"tracker.peer_ttl_s=9"}), "tracker.peer_ttl_s");
  check_error_names(from_env({{"SWARMCOORD_SERVER_IDLE_TIMEOUT_S", "4"}}), "server.idle_timeout_s");
  check_error_names(from_sets({"server.max_connections=99999999999999999999"}), "server.max_connections");
  // The bounds themselves are accepted.
  CHECK(cfg::load(from_sets({"tracker.max_offers=1"})).tracker.max_offers == 1);
  CHECK(cfg::load(from_sets({"tracker.max_offers=100"})).tracker.max_offers == 100);
  CHECK(cfg::load(from_sets({"server.max_message_bytes=1024"})).server.max_message_bytes == 1024);
}

TEST_CASE("config bad listen addresses are refused, naming the key") {
  for (const char* bad : {"nonsense", "1.2.3.4", "1.2.3.4:99999", "1.2.3.4:65536", "example.com:80", "[::1]:",
                          "1.2.3.4:-1", ":8000", "1.2.3.4:8x", "[::1:80", "1.2.3.4:123456", ""}) {
    INFO("listen = " << bad);
    check_error_names(from_sets({std::string("server.listen=\"") + bad + "\""}), "server.listen");
    check_error_names(from_sets({std::string("admin.listen=\"") + bad + "\""}), "admin.listen");
  }
  auto c = cfg::load(from_sets({"server.listen=\"127.0.0.1:0\"", "admin.listen=\"[::]:65535\""}));
  CHECK(c.server.listen.port == 0);
  CHECK(c.admin.listen.host == "::");
  CHECK(c.admin.listen.port == 65535);
}

TEST_CASE("config bad CIDRs are refused, naming the key") {
  file_error("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "server.trusted_proxies");
  file_error("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"garbage\"]\n", "server.trusted_proxies");
  check_error_names(from_sets({R"(server.trusted_proxies=["2001:db8::/129"])"}), "server.trusted_proxies");
  check_error_names(from_env({{"SWARMCOORD_SERVER_TRUSTED_PROXIES", R"([""])"}}), "server.trusted_proxies");
}

TEST_CASE("config bad log level or format is refused, naming the key") {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"})
    CHECK(cfg::load(from_sets({std::string("log.level=") + level})).log.level == level);
  check_error_names(from_sets({"log.level=verbose"}), "log.level");
  check_error_names(from_sets({"log.level=INFO"}), "log.level");
  file_error("[log]\nlevel = \"\"\n", "log.level");
  check_error_names(from_sets({"log.format=xml"}), "log.format");
}

TEST_CASE("config tls_cert and tls_key go together") {
  check_error_names(from_sets({"server.tls_cert=/etc/cert.pem"}), "tls_cert");
  check_error_names(from_sets({"server.tls_key=/etc/key.pem"}), "tls_");
  auto c = cfg::load(from_sets({"server.tls_cert=/etc/cert.pem", "server.tls_key=/etc/key.pem"}));
  CHECK(c.server.tls_cert == "/etc/cert.pem");
  CHECK(c.server.tls_key == "/etc/key.pem");
}

TEST_CASE("config file problems are config_errors naming the file") {
  auto what = file_error("[server\nthreads = 1\n", "");
  CHECK_FALSE(what.empty());
  {
    temp_file f("[server]\nthreads = = 1\n");
    CHECK_THAT(load_error(from_file(f)), Catch::Contains(f.path()));
  }
  const std::string missing = (std::filesystem::temp_directory_path() / "swarmcoord-no-such-file.toml").string();
  cfg::sources s;
  s.file = missing;
  CHECK_THAT(load_error(s), Catch::Contains(missing));
}

TEST_CASE("config print output documents every key, parses as TOML and loads back to the same config") {
  const std::string long_dir = "/etc/swarmcoord/certificates/for/a/rather/long/host/name/example.org/";
  const std::vector<cfg::sources> cases = {
      {},
      from_sets({
          "server.listen=[2001:db8::1]:8443",
          R"(server.trusted_proxies=["10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12", "2001:db8::/32", "fd00::/8"])",
          "server.tls_cert=" + long_dir + "fullchain.pem",
          R"(server.tls_key='C:\keys\"quoted" key.pem')",
          "server.threads=2",
          "admin.listen=[::1]:9100",
          "log.level=debug",
          "log.format=json",
          "tracker.max_offers=20",
          "tracker.offer_ttl_s=45",
          "tracker.max_scrape_all=0",
      }),
      from_env({{"SWARMCOORD_SERVER_MAX_MESSAGE_BYTES", "1048576"}, {"SWARMCOORD_LOG_FORMAT", "json"}}),
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    const auto& src = cases[i];
    const auto expected = cfg::load(src);
    const auto text = cfg::print(src);
    INFO("printed:\n" << text);

    toml::table parsed;
    REQUIRE_NOTHROW(parsed = toml::parse(text));

    // Each key appears once, preceded by its documentation.
    for (std::string full : every_key) {
      const auto dot = full.find('.');
      const std::string section = full.substr(0, dot), key = full.substr(dot + 1);
      CHECK(parsed[section][key].node() != nullptr);
      const auto at = text.find("\n" + key + " = ");
      REQUIRE(at != std::string::npos);
      const auto line_start = text.rfind('\n', at - 1);
      CHECK(text.compare(line_start + 1, 2, "# ") == 0);
    }

    temp_file f(text);
    const auto reloaded = cfg::load(from_file(f));
    check_same(reloaded, expected);
    CHECK(cfg::print(from_file(f)) == text);  // a fixed point
  }
}

TEST_CASE("config print reflects the effective values") {
  auto text = cfg::print(from_sets({"tracker.max_offers=42", "log.level=warn"}));
  CHECK_THAT(text, Catch::Contains("\nmax_offers = 42\n"));
  CHECK_THAT(text, Catch::Contains("\nlevel = \"warn\"\n"));
  CHECK_THAT(cfg::print({}), Catch::Contains("\nmax_offers = 10\n"));
  // threads is printed as configured (0 = one per core), not as resolved.
  CHECK_THAT(cfg::print({}), Catch::Contains("\nthreads = 0\n"));
}

TEST_CASE("the shipped config/swarmcoord.toml is exactly print() of the defaults") {
  const std::string path = std::string(SWARMCOORD_SOURCE_DIR) + "/config/swarmcoord.toml";
  INFO("regenerate it with: build/swarmcoord --print-config > config/swarmcoord.toml");
  REQUIRE(std::filesystem::is_regular_file(path));
  const auto shipped = read_text(path);
  CHECK(shipped == cfg::print({}));
  cfg::sources s;
  s.file = path;
  check_same(cfg::load(s), cfg::load({}));
}
