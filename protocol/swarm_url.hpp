#pragma once
// The key of a native swarm: the resource URL, normalized so that spellings of the same URL
// meet in one swarm. Pure; thread-safe.
#include <optional>
#include <string>
#include <string_view>

namespace swarmcoord::protocol {

inline constexpr std::size_t max_swarm_url_bytes = 2048;

// http(s) URLs only; scheme and host lower-cased, the scheme's default port and the fragment
// dropped, an empty path made "/". Path and query are kept byte for byte. nullopt for anything
// else (other schemes, user info, no host, control characters or spaces, over the length).
std::optional<std::string> normalize_swarm_url(std::string_view url);

}  // namespace swarmcoord::protocol
