#pragma once
// Block manifests: the SHA-256 of every block of a resource, so that a client can verify each
// block it receives from a peer (protocol/README.md, "Manifests"). Thread-safe (pure function
// of its input stream).
#include <cstdint>
#include <istream>
#include <optional>
#include <string>

namespace swarmcoord::manifest {

inline constexpr std::uint32_t min_block_size = 1024;
inline constexpr std::uint32_t max_block_size = 64u << 20;

// The manifest of everything `in` yields, as one line of JSON:
//   {"version":1,"size":N,"block_size":B,"algorithm":"sha-256","blocks":["<base64>",…]}
// with "url" first when given. Throws std::runtime_error when reading fails.
std::string make(std::istream& in, std::uint32_t block_size, const std::optional<std::string>& url = {});

}  // namespace swarmcoord::manifest
