#include "protocol/swarm_url.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

namespace swarmcoord::protocol {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
bool all_of(std::string_view s, bool (*pred)(char)) { return std::all_of(s.begin(), s.end(), pred); }

// RFC 3986 reg-name without pct-encoded: unreserved / sub-delims. A percent-encoded host is
// another spelling of a plain one (browsers decode it), so it would split a swarm in two.
bool is_name_char(char c) {
  static constexpr std::string_view others = "-._~!$&'()*+,;=";
  return is_alpha(c) || is_digit(c) || others.find(c) != std::string_view::npos;
}

// Four decimal octets, no leading zeros (RFC 3986 IPv4address). Writes the octets to *out.
bool parse_ipv4(std::string_view s, std::array<std::uint8_t, 4>* out = nullptr) {
  for (int i = 0; i < 4; ++i) {
    const auto dot = i < 3 ? s.find('.') : s.size();
    if (dot == std::string_view::npos) return false;
    const auto part = s.substr(0, dot);
    if (part.empty() || part.size() > 3 || !all_of(part, is_digit) || (part.size() > 1 && part[0] == '0')) return false;
    int value = 0;
    for (char c : part) value = value * 10 + (c - '0');
    if (value > 255) return false;
    if (out) (*out)[i] = static_cast<std::uint8_t>(value);
    s.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  return true;
}

// Browsers read a host whose last label is a number (decimal, or 0x hex), after one trailing
// dot, as an IPv4 address in any of several shorthands ("127.1", "0x7f.1", "2130706433");
// resolvers read some of them as names. Only the dotted quad means the same everywhere.
bool ends_in_number(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  const auto label = host.substr(host.rfind('.') + 1);  // npos + 1 == 0
  if (label.empty()) return false;
  if (all_of(label, is_digit)) return true;
  return label.size() >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') && all_of(label.substr(2), is_hex);
}

std::optional<std::string> normal_name(std::string_view host) {
  if (host.empty() || !all_of(host, is_name_char)) return std::nullopt;
  if (ends_in_number(host) && !parse_ipv4(host)) return std::nullopt;
  std::string out(host);
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

// Groups of 1-4 hex digits separated by ':'; the last may be an IPv4 address (two groups).
bool parse_ipv6_groups(std::string_view s, std::vector<std::uint16_t>& groups) {
  if (s.empty()) return true;
  for (;;) {
    const auto colon = s.find(':');
    const auto part = s.substr(0, colon);
    if (colon == std::string_view::npos && part.find('.') != std::string_view::npos) {
      std::array<std::uint8_t, 4> v4{};
      if (!parse_ipv4(part, &v4)) return false;
      groups.push_back(static_cast<std::uint16_t>(v4[0] << 8 | v4[1]));
      groups.push_back(static_cast<std::uint16_t>(v4[2] << 8 | v4[3]));
      return true;
    }
    if (part.empty() || part.size() > 4 || !all_of(part, is_hex)) return false;
    std::uint16_t value = 0;
    for (char c : part) value = static_cast<std::uint16_t>(value << 4 | (is_digit(c) ? c - '0' : ascii_lower(c) - 'a' + 10));
    groups.push_back(value);
    if (colon == std::string_view::npos) return true;
    s.remove_prefix(colon + 1);
  }
}

// The RFC 3986 IPv6address inside the brackets, written as browsers write it (RFC 5952 and the
// URL Standard): lower-case hex without leading zeros, the first longest run of two or more
// zero groups as "::", an IPv4 tail in hex. Zone ids and IPvFuture are refused.
std::optional<std::string> normal_ipv6(std::string_view inside) {
  std::vector<std::uint16_t> head, tail;
  const auto gap = inside.find("::");
  if (gap == std::string_view::npos) {
    if (!parse_ipv6_groups(inside, head) || head.size() != 8) return std::nullopt;
  } else {
    const auto before = inside.substr(0, gap), after = inside.substr(gap + 2);
    if (before.find('.') != std::string_view::npos) return std::nullopt;  // IPv4 only at the end
    if (!parse_ipv6_groups(before, head) || !parse_ipv6_groups(after, tail)) return std::nullopt;
    if (head.size() + tail.size() > 7) return std::nullopt;  // "::" stands for one group at least
    head.resize(8 - tail.size(), 0);
    head.insert(head.end(), tail.begin(), tail.end());
  }
  std::size_t run_start = 8, run_length = 1;
  for (std::size_t i = 0; i < 8;) {
    std::size_t j = i;
    while (j < 8 && head[j] == 0) ++j;
    if (j - i > run_length) run_start = i, run_length = j - i;
    i = j == i ? i + 1 : j;
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "[";
  for (std::size_t i = 0; i < 8; ++i) {
    if (i == run_start) {
      out += "::";
      i += run_length - 1;
      continue;
    }
    if (i > 0 && i != run_start + run_length) out += ':';
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      const int d = head[i] >> shift & 0xf;
      if (d || started || shift == 0) out += digits[d], started = true;
    }
  }
  return out + "]";
}

}  // namespace

std::optional<std::string> normalize_swarm_url(std::string_view url) {
  if (url.empty() || url.size() > max_swarm_url_bytes) return std::nullopt;
  for (char c : url)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
  url = url.substr(0, url.find('#'));

  const auto colon = url.find("://");
  if (colon == std::string_view::npos) return std::nullopt;
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), ascii_lower);
  if (scheme != "http" && scheme != "https") return std::nullopt;

  std::string_view rest = url.substr(colon + 3);
  const auto path_start = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, path_start);
  const std::string_view path = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);

  // host [":" port]; user info and anything else with '@' fails the host's character check.
  std::optional<std::string> host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = normal_ipv6(authority.substr(1, close - 1));
    port = authority.substr(close + 1);
  } else {
    const auto c = authority.find(':');
    host = normal_name(authority.substr(0, c));
    port = c == std::string_view::npos ? std::string_view{} : authority.substr(c);
  }
  if (!host) return std::nullopt;
  if (!port.empty()) {
    if (port.front() != ':') return std::nullopt;
    port.remove_prefix(1);
  }
  if (port.size() > 5 || !all_of(port, is_digit)) return std::nullopt;
  while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
  if (port.size() == 5 && port > "65535") return std::nullopt;
  if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) port = {};

  std::string out = scheme + "://" + *host;
  if (!port.empty()) (out += ':') += port;
  if (path.empty() || path.front() == '?') out += '/';
  out += path;
  // Normalizing can lengthen a URL ("/" for an empty path, a one-group "::" written out): a key
  // over the limit would be refused when a client sends it back.
  if (out.size() > max_swarm_url_bytes) return std::nullopt;
  return out;
}

}  // namespace swarmcoord::protocol
