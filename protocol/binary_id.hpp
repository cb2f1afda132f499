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
    // Ids are hashes or random bytes already; the first 8 bytes mixed with the next 8 spread
    // well. ASCII ids (p2p-media-loader) still differ in those bytes.
    std::uint64_t a, b;
    std::memcpy(&a, id.bytes.data(), 8);
    std::memcpy(&b, id.bytes.data() + 8, 8);
    std::uint32_t c;
    std::memcpy(&c, id.bytes.data() + 16, 4);
    std::uint64_t h = a ^ (b * 0x9E3779B97F4A7C15ull) ^ (std::uint64_t{c} << 17);
    h ^= h >> 31;
    h *= 0xBF58476D1CE4E5B9ull;
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

}  // namespace swarmcoord::protocol
