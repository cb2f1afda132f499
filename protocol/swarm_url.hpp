#pragma once
// The key of a native swarm: the resource URL, normalized so that spellings of the same URL
// meet in one swarm. Pure; thread-safe.
#include <optional>
#include <string>
#include <string_view>

namespace swarmcoord::protocol {

inline constexpr std::size_t max_swarm_url_bytes = 2048;

// http(s) URLs only; scheme and host lower-cased, the scheme's default port and the fragment
// dropped, an empty path made "/". Path and query are kept byte for byte. The host is a name
// (RFC 3986 reg-name without percent-encoding, not ending in a numeric label unless it is a
// dotted-quad IPv4 address) or a bracketed IPv6 address, written as browsers write it; the
// port at most 5 digits, up to 65535. nullopt for anything else (other schemes, user info,
// other hosts, control characters or spaces, over the length before or after normalizing).
// A key normalizes to itself.
std::optional<std::string> normalize_swarm_url(std::string_view url);

}  // namespace swarmcoord::protocol
