#pragma once
// 20-byte identifiers of the WebTorrent protocol (info_hash, peer_id, offer_id), carried on the
// wire as JSON strings of 20 code points U+0000..U+00FF, one per byte ("latin1 in UTF-8").
// Pure value types; thread-safe as values.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/keyed_hash.hpp"

namespace swarmcoord::protocol {

struct binary_id {
  static constexpr std::size_t size = 20;
  std::array<std::uint8_t, size> bytes{};

  friend bool operator==(const binary_id&, const binary_id&) = default;
  friend auto operator<=>(const binary_id&, const binary_id&) = default;

  // Lower-case hex, for logs and /stats (never for metric labels).
  std::string hex() const;
};

// Decodes a UTF-8 string (already JSON-unescaped) whose code points are all <= U+00FF and
// number exactly 20. Returns nullopt for any other input, including malformed UTF-8.
std::optional<binary_id> decode_binary_id(std::string_view utf8);

// Encodes each byte as one code point (bytes >= 0x80 become two UTF-8 bytes).
std::string encode_binary_id(const binary_id& id);

struct binary_id_hash {
  std::size_t operator()(const binary_id& id) const noexcept {
    return static_cast<std::size_t>(
        keyed_hash(std::string_view(reinterpret_cast<const char*>(id.bytes.data()), binary_id::size)));
  }
};

}  // namespace swarmcoord::protocol
