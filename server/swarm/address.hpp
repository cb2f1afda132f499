#pragma once
// Client addresses as the domain sees them: IPv4 and IPv6 in one 16-byte form (IPv4 mapped
// to ::ffff:a.b.c.d), CIDR ranges, the locality subnet key, and the client address behind
// trusted proxies. Pure; thread-safe as values.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace swarmcoord::swarm {

struct ip_address {
  std::array<std::uint8_t, 16> bytes{};

  bool is_v4() const;
  std::string to_string() const;
  static std::optional<ip_address> parse(std::string_view text);
  static ip_address v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d);

  friend bool operator==(const ip_address&, const ip_address&) = default;
};

// Peers with the same key are "near": same IPv4 /24 or same IPv6 /48.
std::uint64_t subnet_key(const ip_address& a);

struct cidr {
  ip_address base;       // already masked
  unsigned prefix = 0;   // in the 128-bit (mapped) space

  bool contains(const ip_address& a) const;
  // "10.1.0.0/16", "2001:db8::/32", or a bare address (a single host).
  static std::optional<cidr> parse(std::string_view text);
};

bool in_any(const std::vector<cidr>& ranges, const ip_address& a);

// The address a request really came from. When the socket peer is a trusted proxy, walk the
// X-Forwarded-For list (or, without it, the Forwarded header's for= entries) from the right,
// skipping trusted proxies, and take the first other address; anything unparsable ends the
// walk at the last trusted hop. Untrusted peers can't forge their address this way.
ip_address client_address(const ip_address& socket_peer, std::string_view x_forwarded_for,
                          std::string_view forwarded, const std::vector<cidr>& trusted);

}  // namespace swarmcoord::swarm
