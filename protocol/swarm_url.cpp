#include "protocol/swarm_url.hpp"

#include <algorithm>
#include <cctype>

namespace swarmcoord::protocol {

std::optional<std::string> normalize_swarm_url(std::string_view url) {
  if (url.empty() || url.size() > max_swarm_url_bytes) return std::nullopt;
  for (char c : url)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
  url = url.substr(0, url.find('#'));

  const auto colon = url.find("://");
  if (colon == std::string_view::npos) return std::nullopt;
  std::string scheme(url.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (scheme != "http" && scheme != "https") return std::nullopt;

  std::string_view rest = url.substr(colon + 3);
  const auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;

  std::string host;
  std::string_view port;
  if (authority.front() == '[') {  // IPv6 literal
    const auto close = authority.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;  // "[]" names no host
    host = authority.substr(0, close + 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
    }
  } else {
    const auto c = authority.rfind(':');
    host = authority.substr(0, c);
    if (c != std::string_view::npos) port = authority.substr(c + 1);
  }
  if (host.empty()) return std::nullopt;
  std::transform(host.begin(), host.end(), host.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }) || port.size() > 5)
    return std::nullopt;
  while (port.size() > 1 && port.front() == '0') port.remove_prefix(1);
  if (!port.empty() && std::stoul(std::string(port)) > 65535) return std::nullopt;
  if ((scheme == "http" && port == "80") || (scheme == "https" && port == "443")) port = {};

  std::string out = scheme + "://" + host;
  if (!port.empty()) out += ":" + std::string(port);
  if (path.empty() || path.front() == '?') out += "/";
  out += path;
  return out;
}

}  // namespace swarmcoord::protocol
