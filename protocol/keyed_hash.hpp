#pragma once
// Hashes of identifiers that clients choose (info_hashes, peer_ids, offer_ids, swarm URLs).
// They pick hash-table buckets and worker shards, so they are keyed with a secret drawn at
// process start: without the key nobody can compute a set of ids that pile into one bucket
// or one shard. Thread-safe (the key is set once, before main).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace swarmcoord::protocol {

std::uint64_t hash_key();

inline std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x;
}

// Keyed hash of a byte string: each 8-byte word is folded in through a non-linear mix.
inline std::uint64_t keyed_hash(std::string_view bytes) {
  std::uint64_t h = hash_key() ^ (bytes.size() * 0x9E3779B97F4A7C15ull);
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = mix64(h ^ w);
  }
  std::uint64_t tail = 0;
  std::memcpy(&tail, bytes.data() + i, bytes.size() - i);
  return mix64(h ^ tail ^ 0xFF);
}

struct keyed_string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return static_cast<std::size_t>(keyed_hash(s)); }
};

}  // namespace swarmcoord::protocol
