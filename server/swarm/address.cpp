#include "server/swarm/address.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace swarmcoord::swarm {
namespace {

constexpr std::array<std::uint8_t, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One hop of X-Forwarded-For or a Forwarded "for=" value: bare address, "[v6]:port",
// "v4:port" or a quoted form of those.
std::optional<ip_address> parse_hop(std::string_view s) {
  s = trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    return ip_address::parse(s.substr(1, close - 1));
  }
  if (auto colon = s.find(':'); colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos)
    s = s.substr(0, colon);  // IPv4 with a port
  return ip_address::parse(s);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    auto pos = s.find(sep);
    parts.push_back(s.substr(0, pos));
    if (pos == std::string_view::npos) break;
    s.remove_prefix(pos + 1);
  }
  return parts;
}

std::vector<std::string_view> forwarded_for_values(std::string_view header) {
  std::vector<std::string_view> out;
  for (auto element : split(header, ','))
    for (auto pair : split(element, ';')) {
      pair = trim(pair);
      if (pair.size() > 4 && (pair.substr(0, 4) == "for=" || pair.substr(0, 4) == "For=" ||
                              pair.substr(0, 4) == "FOR="))
        out.push_back(pair.substr(4));
    }
  return out;
}

}  // namespace

bool ip_address::is_v4() const { return std::memcmp(bytes.data(), v4_mapped_prefix.data(), 12) == 0; }

ip_address ip_address::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  ip_address ip;
  std::memcpy(ip.bytes.data(), v4_mapped_prefix.data(), 12);
  ip.bytes[12] = a;
  ip.bytes[13] = b;
  ip.bytes[14] = c;
  ip.bytes[15] = d;
  return ip;
}

std::optional<ip_address> ip_address::parse(std::string_view text) {
  if (text.empty() || text.size() > 45 || text.find('\0') != std::string_view::npos) return std::nullopt;
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  ip_address ip;
  unsigned char v4buf[4];
  if (::inet_pton(AF_INET, buf, v4buf) == 1)
    return v4(v4buf[0], v4buf[1], v4buf[2], v4buf[3]);
  if (::inet_pton(AF_INET6, buf, ip.bytes.data()) == 1) return ip;
  return std::nullopt;
}

std::string ip_address::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4()) ::inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
  else ::inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::uint64_t subnet_key(const ip_address& a) {
  std::uint64_t key = 0;
  if (a.is_v4()) {
    // Tag v4 keys so that they can't collide with a v6 /48.
    key = (std::uint64_t{1} << 63) | (std::uint64_t{a.bytes[12]} << 16) |
          (std::uint64_t{a.bytes[13]} << 8) | a.bytes[14];
  } else {
    for (int i = 0; i < 6; ++i) key = (key << 8) | a.bytes[i];
  }
  return key;
}

bool cidr::contains(const ip_address& a) const {
  unsigned full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a.bytes.data(), base.bytes.data(), full) != 0) return false;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xFF << (8 - rest));
  return (a.bytes[full] & mask) == base.bytes[full];
}

std::optional<cidr> cidr::parse(std::string_view text) {
  text = trim(text);
  auto slash = text.find('/');
  auto ip = ip_address::parse(text.substr(0, slash));
  if (!ip) return std::nullopt;
  unsigned max = ip->is_v4() ? 32 : 128;
  unsigned bits = max;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    bits = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      bits = bits * 10 + static_cast<unsigned>(c - '0');
    }
    if (bits > max) return std::nullopt;
  }
  cidr range;
  range.prefix = ip->is_v4() ? bits + 96 : bits;
  range.base = *ip;
  for (unsigned i = 0; i < 16; ++i) {
    unsigned keep = range.prefix > i * 8 ? std::min(8u, range.prefix - i * 8) : 0;
    range.base.bytes[i] &= keep == 0 ? 0 : static_cast<std::uint8_t>(0xFF << (8 - keep));
  }
  return range;
}

bool in_any(const std::vector<cidr>& ranges, const ip_address& a) {
  for (const auto& r : ranges)
    if (r.contains(a)) return true;
  return false;
}

ip_address client_address(const ip_address& socket_peer, std::string_view x_forwarded_for,
                          std::string_view forwarded, const std::vector<cidr>& trusted) {
  if (!in_any(trusted, socket_peer)) return socket_peer;
  std::vector<std::string_view> hops;
  if (!trim(x_forwarded_for).empty()) hops = split(x_forwarded_for, ',');
  else if (!trim(forwarded).empty()) hops = forwarded_for_values(forwarded);
  ip_address current = socket_peer;
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    auto hop = parse_hop(*it);
    if (!hop) break;
    current = *hop;
    if (!in_any(trusted, current)) break;
  }
  return current;
}

}  // namespace swarmcoord::swarm
