// Client addresses: parsing, locality keys, CIDR ranges, trusted-proxy headers.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "server/swarm/address.hpp"

namespace {

using swarmcoord::swarm::cidr;
using swarmcoord::swarm::client_address;
using swarmcoord::swarm::in_any;
using swarmcoord::swarm::ip_address;
using swarmcoord::swarm::subnet_key;

ip_address ip(std::string_view text) {
  auto a = ip_address::parse(text);
  INFO("address " << text);
  REQUIRE(a.has_value());
  return *a;
}

cidr range(std::string_view text) {
  auto r = cidr::parse(text);
  INFO("range " << text);
  REQUIRE(r.has_value());
  return *r;
}

std::vector<cidr> ranges(std::initializer_list<std::string_view> texts) {
  std::vector<cidr> out;
  for (auto t : texts) out.push_back(range(t));
  return out;
}

// client_address with only X-Forwarded-For, only Forwarded, or neither.
std::string via_xff(std::string_view peer, std::string_view xff, const std::vector<cidr>& trusted) {
  return client_address(ip(peer), xff, "", trusted).to_string();
}
std::string via_forwarded(std::string_view peer, std::string_view fwd, const std::vector<cidr>& trusted) {
  return client_address(ip(peer), "", fwd, trusted).to_string();
}

}  // namespace

TEST_CASE("ip_address parses and prints IPv4") {
  auto a = ip("192.168.1.20");
  CHECK(a.is_v4());
  CHECK(a.to_string() == "192.168.1.20");
  CHECK(a == ip_address::v4(192, 168, 1, 20));
  // IPv4 is stored mapped: ::ffff:a.b.c.d.
  const std::array<std::uint8_t, 16> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 20};
  CHECK(a.bytes == mapped);

  CHECK(ip("0.0.0.0").to_string() == "0.0.0.0");
  CHECK(ip("255.255.255.255").to_string() == "255.255.255.255");
  CHECK(ip("0.0.0.0") != ip("0.0.0.1"));
  CHECK(ip_address::v4(10, 0, 0, 1).to_string() == "10.0.0.1");
}

TEST_CASE("ip_address parses and prints IPv6 in canonical form") {
  auto a = ip("2001:db8::1");
  CHECK_FALSE(a.is_v4());
  CHECK(a.to_string() == "2001:db8::1");
  CHECK(a.bytes[0] == 0x20);
  CHECK(a.bytes[1] == 0x01);
  CHECK(a.bytes[2] == 0x0d);
  CHECK(a.bytes[3] == 0xb8);
  CHECK(a.bytes[15] == 0x01);

  CHECK(ip("2001:0DB8:0000:0000:0000:0000:0000:0001") == a);
  CHECK(ip("2001:0DB8:0000:0000:0000:0000:0000:0001").to_string() == "2001:db8::1");
  CHECK(ip("::1").to_string() == "::1");
  CHECK_FALSE(ip("::1").is_v4());
  CHECK(ip("::").to_string() == "::");
  CHECK(ip("fe80::1:2:3:4").to_string() == "fe80::1:2:3:4");
  // An IPv4-mapped IPv6 literal is the same address as the IPv4 one.
  CHECK(ip("::ffff:1.2.3.4") == ip_address::v4(1, 2, 3, 4));
  CHECK(ip("::ffff:1.2.3.4").is_v4());
}

TEST_CASE("ip_address rejects what is not an address") {
  for (const char* text : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "abc", "1.2.3.4 ", " 1.2.3.4",
                           "1.2.3.4:80", "[::1]", "::g", "2001:db8:::1", "1:2:3:4:5:6:7:8:9", "localhost",
                           "0x7f.0.0.1"}) {
    INFO("text '" << text << "'");
    CHECK_FALSE(ip_address::parse(text));
  }
  CHECK_FALSE(ip_address::parse(std::string(46, '1')));
  CHECK_FALSE(ip_address::parse(std::string(1000, ':')));
  CHECK_FALSE(ip_address::parse(std::string_view("1.2.3.4\0", 8)));
}

TEST_CASE("subnet_key groups IPv4 by /24 and IPv6 by /48") {
  CHECK(subnet_key(ip("10.0.0.1")) == subnet_key(ip("10.0.0.254")));
  CHECK(subnet_key(ip("10.0.0.1")) == subnet_key(ip("10.0.0.0")));
  CHECK(subnet_key(ip("10.0.0.1")) != subnet_key(ip("10.0.1.1")));
  CHECK(subnet_key(ip("10.0.0.1")) != subnet_key(ip("11.0.0.1")));
  CHECK(subnet_key(ip("10.0.0.1")) != subnet_key(ip("10.1.0.1")));
  CHECK(subnet_key(ip("192.168.7.1")) != subnet_key(ip("192.168.8.1")));

  CHECK(subnet_key(ip("2001:db8:1::1")) == subnet_key(ip("2001:db8:1:ffff:ffff::2")));
  CHECK(subnet_key(ip("2001:db8:1::1")) != subnet_key(ip("2001:db8:2::1")));
  CHECK(subnet_key(ip("2001:db8:1::1")) != subnet_key(ip("2001:db9:1::1")));
  CHECK(subnet_key(ip("2001:db8:1::1")) != subnet_key(ip("3001:db8:1::1")));

  // IPv4 keys never collide with IPv6 ones.
  CHECK(subnet_key(ip("0.0.0.1")) != subnet_key(ip("::1")));
  CHECK(subnet_key(ip("0.0.0.1")) != subnet_key(ip("::")));

  // Every /24 of a /16 gets its own key.
  std::set<std::uint64_t> keys;
  for (int c = 0; c < 256; ++c) keys.insert(subnet_key(ip_address::v4(172, 16, static_cast<std::uint8_t>(c), 9)));
  CHECK(keys.size() == 256);
}

TEST_CASE("cidr parses IPv4 ranges with and without a prefix") {
  auto r = range("10.1.0.0/16");
  CHECK(r.contains(ip("10.1.0.0")));
  CHECK(r.contains(ip("10.1.255.255")));
  CHECK(r.contains(ip("10.1.77.3")));
  CHECK_FALSE(r.contains(ip("10.2.0.0")));
  CHECK_FALSE(r.contains(ip("10.0.255.255")));
  CHECK_FALSE(r.contains(ip("11.1.0.0")));

  auto host = range("192.0.2.7");
  CHECK(host.contains(ip("192.0.2.7")));
  CHECK_FALSE(host.contains(ip("192.0.2.6")));
  CHECK_FALSE(host.contains(ip("192.0.2.8")));
  CHECK(range("192.0.2.7/32").contains(ip("192.0.2.7")));
  CHECK_FALSE(range("192.0.2.7/32").contains(ip("192.0.2.6")));

  // Host bits in the base are masked off.
  auto unaligned = range("10.1.2.3/16");
  CHECK(unaligned.base == ip("10.1.0.0"));
  CHECK(unaligned.contains(ip("10.1.200.200")));
  CHECK_FALSE(unaligned.contains(ip("10.2.2.3")));

  // Prefixes that are not a multiple of 8.
  auto r23 = range("192.168.0.0/23");
  CHECK(r23.contains(ip("192.168.1.255")));
  CHECK_FALSE(r23.contains(ip("192.168.2.0")));
  auto r25 = range("192.168.0.128/25");
  CHECK(r25.contains(ip("192.168.0.200")));
  CHECK_FALSE(r25.contains(ip("192.168.0.127")));
  auto r31 = range("192.168.0.4/31");
  CHECK(r31.contains(ip("192.168.0.5")));
  CHECK_FALSE(r31.contains(ip("192.168.0.6")));
  CHECK_FALSE(r31.contains(ip("192.168.0.3")));

  auto all_v4 = range("0.0.0.0/0");
  CHECK(all_v4.contains(ip("1.2.3.4")));
  CHECK(all_v4.contains(ip("255.255.255.255")));
  CHECK_FALSE(all_v4.contains(ip("2001:db8::1")));  // IPv4 ranges never hold IPv6 addresses
  CHECK_FALSE(range("10.0.0.0/8").contains(ip("a00::1")));
}

TEST_CASE("cidr parses IPv6 ranges with and without a prefix") {
  auto r = range("2001:db8::/32");
  CHECK(r.contains(ip("2001:db8::1")));
  CHECK(r.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  CHECK_FALSE(r.contains(ip("2001:db9::1")));
  CHECK_FALSE(r.contains(ip("1.2.3.4")));

  auto link_local = range("fe80::/10");
  CHECK(link_local.contains(ip("fe80::1")));
  CHECK(link_local.contains(ip("febf:ffff::1")));
  CHECK_FALSE(link_local.contains(ip("fec0::1")));

  auto host = range("::1");
  CHECK(host.contains(ip("::1")));
  CHECK_FALSE(host.contains(ip("::2")));
  CHECK(range("::1/128").contains(ip("::1")));
  CHECK_FALSE(range("::1/128").contains(ip("::")));

  auto masked = range("2001:db8:abcd:1234::5/48");
  CHECK(masked.base == ip("2001:db8:abcd::"));
  CHECK(masked.contains(ip("2001:db8:abcd:ffff::1")));
  CHECK_FALSE(masked.contains(ip("2001:db8:abce::1")));
}

TEST_CASE("cidr rejects malformed ranges") {
  for (const char* text : {"", "/", "/24", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/abc",
                           "10.0.0.0/1234", "10.0.0.0/24/1", "10.0.0/24", "10.0.0.0/2 4", "garbage",
                           "2001:db8::/129", "2001:db8::/", "2001:db8::/1x", "[2001:db8::]/32",
                           "10.0.0.0\\8", "10.0.0.0/+8"}) {
    INFO("text '" << text << "'");
    CHECK_FALSE(cidr::parse(text));
  }
}

TEST_CASE("in_any checks every range") {
  auto trusted = ranges({"10.0.0.0/8", "192.168.1.0/24", "fd00::/8"});
  CHECK(in_any(trusted, ip("10.9.9.9")));
  CHECK(in_any(trusted, ip("192.168.1.77")));
  CHECK(in_any(trusted, ip("fd12::1")));
  CHECK_FALSE(in_any(trusted, ip("192.168.2.1")));
  CHECK_FALSE(in_any(trusted, ip("fe00::1")));
  CHECK_FALSE(in_any({}, ip("10.0.0.1")));
}

TEST_CASE("client_address ignores forwarding headers from an untrusted socket peer") {
  auto trusted = ranges({"10.0.0.0/8"});
  CHECK(via_xff("203.0.113.9", "198.51.100.1", trusted) == "203.0.113.9");
  CHECK(via_forwarded("203.0.113.9", "for=198.51.100.1", trusted) == "203.0.113.9");
  CHECK(client_address(ip("203.0.113.9"), "198.51.100.1", "for=198.51.100.2", trusted).to_string() ==
        "203.0.113.9");
  // With nothing trusted at all, headers never matter.
  CHECK(via_xff("10.0.0.1", "198.51.100.1", {}) == "10.0.0.1");
}

TEST_CASE("client_address takes the right-most untrusted X-Forwarded-For hop from a trusted proxy") {
  auto trusted = ranges({"10.0.0.0/8", "fd00::/8"});
  CHECK(via_xff("10.0.0.1", "203.0.113.5", trusted) == "203.0.113.5");
  // The client can prepend anything; only what the trusted proxy appended counts.
  CHECK(via_xff("10.0.0.1", "1.1.1.1, 203.0.113.5", trusted) == "203.0.113.5");
  CHECK(via_xff("10.0.0.1", "1.1.1.1,203.0.113.5", trusted) == "203.0.113.5");
  CHECK(via_xff("10.0.0.1", "  198.51.100.4 ,\t203.0.113.5  ", trusted) == "203.0.113.5");
  // IPv6 client, IPv6 proxy.
  CHECK(via_xff("fd00::1", "2001:db8::77", trusted) == "2001:db8::77");
  // Hops with ports.
  CHECK(via_xff("10.0.0.1", "203.0.113.5:51234", trusted) == "203.0.113.5");
  CHECK(via_xff("10.0.0.1", "[2001:db8::5]:443", trusted) == "2001:db8::5");
  // No header at all: the proxy itself.
  CHECK(via_xff("10.0.0.1", "", trusted) == "10.0.0.1");
  CHECK(via_xff("10.0.0.1", "   ", trusted) == "10.0.0.1");
}

TEST_CASE("client_address skips several trusted hops") {
  auto trusted = ranges({"10.0.0.0/8", "192.168.0.0/16"});
  CHECK(via_xff("10.0.0.1", "198.51.100.7, 203.0.113.5, 192.168.3.3, 10.0.0.2", trusted) == "203.0.113.5");
  CHECK(via_forwarded("10.0.0.1", "for=198.51.100.7, for=203.0.113.5, for=192.168.3.3, for=10.0.0.2",
                      trusted) == "203.0.113.5");
  // All hops trusted: the left-most one is as far as the chain can be followed.
  CHECK(via_xff("10.0.0.1", "10.0.0.5, 192.168.1.1", trusted) == "10.0.0.5");
}

TEST_CASE("client_address stops at garbage hops") {
  auto trusted = ranges({"10.0.0.0/8"});
  // Unparsable right-most hop: the trusted socket peer is all that is known.
  CHECK(via_xff("10.0.0.1", "203.0.113.5, garbage", trusted) == "10.0.0.1");
  CHECK(via_xff("10.0.0.1", "203.0.113.5, ", trusted) == "10.0.0.1");
  CHECK(via_xff("10.0.0.1", "unknown", trusted) == "10.0.0.1");
  // Garbage behind a trusted hop: the walk ends at that (last trusted) hop.
  CHECK(via_xff("10.0.0.1", "203.0.113.5, garbage, 10.0.0.2", trusted) == "10.0.0.2");
  CHECK(via_xff("10.0.0.1", "203.0.113.5,,10.0.0.2", trusted) == "10.0.0.2");
  CHECK(via_xff("10.0.0.1", "1.2.3.4.5", trusted) == "10.0.0.1");
  CHECK(via_xff("10.0.0.1", "[2001:db8::1", trusted) == "10.0.0.1");
  CHECK(via_xff("10.0.0.1", std::string(300, ','), trusted) == "10.0.0.1");
  CHECK(via_xff("10.0.0.1", std::string(300, 'x'), trusted) == "10.0.0.1");
}

TEST_CASE("client_address reads the Forwarded header's for= forms") {
  auto trusted = ranges({"10.0.0.0/8"});
  CHECK(via_forwarded("10.0.0.1", "for=192.0.2.60;proto=http;by=203.0.113.43", trusted) == "192.0.2.60");
  CHECK(via_forwarded("10.0.0.1", "proto=https;for=192.0.2.60", trusted) == "192.0.2.60");
  CHECK(via_forwarded("10.0.0.1", "for=\"[2001:db8:cafe::17]:4711\"", trusted) == "2001:db8:cafe::17");
  CHECK(via_forwarded("10.0.0.1", "for=\"[2001:db8:cafe::17]\"", trusted) == "2001:db8:cafe::17");
  CHECK(via_forwarded("10.0.0.1", "for=\"192.0.2.60:8080\"", trusted) == "192.0.2.60");
  CHECK(via_forwarded("10.0.0.1", "for=192.0.2.43, for=198.51.100.17", trusted) == "198.51.100.17");
  CHECK(via_forwarded("10.0.0.1", "for=192.0.2.43, for=10.1.1.1", trusted) == "192.0.2.43");
  CHECK(via_forwarded("10.0.0.1", "For=192.0.2.43", trusted) == "192.0.2.43");
  CHECK(via_forwarded("10.0.0.1", "FOR=192.0.2.43", trusted) == "192.0.2.43");
  // Obfuscated identifiers and "unknown" name nobody usable.
  CHECK(via_forwarded("10.0.0.1", "for=unknown", trusted) == "10.0.0.1");
  CHECK(via_forwarded("10.0.0.1", "for=_hidden, for=10.2.2.2", trusted) == "10.2.2.2");
  CHECK(via_forwarded("10.0.0.1", "by=203.0.113.43", trusted) == "10.0.0.1");
  CHECK(via_forwarded("10.0.0.1", "for=", trusted) == "10.0.0.1");
}

TEST_CASE("client_address prefers X-Forwarded-For over Forwarded") {
  auto trusted = ranges({"10.0.0.0/8"});
  CHECK(client_address(ip("10.0.0.1"), "203.0.113.5", "for=198.51.100.17", trusted).to_string() ==
        "203.0.113.5");
  CHECK(client_address(ip("10.0.0.1"), "", "for=198.51.100.17", trusted).to_string() == "198.51.100.17");
}
