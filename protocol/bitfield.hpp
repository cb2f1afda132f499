#pragma once
// Block bitfields of the native protocol: bit i = block i, most significant bit of byte 0
// first, ceil(blocks/8) bytes on the wire (base64). Stored as 64-bit words for fast popcounts.
// Pure value type; thread-safe as a value.
#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace swarmcoord::protocol {

class bitfield {
 public:
  bitfield() = default;
  explicit bitfield(std::uint32_t size, bool all = false);

  // Wire bytes of a bitfield of `size` bits; nullopt unless exactly ceil(size/8) bytes with
  // the unused trailing bits clear.
  static std::optional<bitfield> from_bytes(std::string_view bytes, std::uint32_t size);
  std::string to_bytes() const;

  std::uint32_t size() const { return size_; }
  bool test(std::uint32_t i) const { return (words_[i >> 6] >> (i & 63)) & 1u; }
  // Returns true when the bit was clear before.
  bool set(std::uint32_t i) {
    auto& w = words_[i >> 6];
    const std::uint64_t bit = std::uint64_t{1} << (i & 63);
    if (w & bit) return false;
    w |= bit;
    ++count_;
    return true;
  }
  std::uint32_t count() const { return count_; }
  bool complete() const { return count_ == size_; }
  bool empty() const { return count_ == 0; }

  // popcount(this & ~other): how many blocks this has that other lacks.
  std::uint32_t count_missing_from(const bitfield& other) const {
    std::uint32_t n = 0;
    for (std::size_t i = 0; i < words_.size(); ++i) n += std::popcount(words_[i] & ~other.words_[i]);
    return n;
  }

  // count_missing_from(other) > 0, stopping at the first such block.
  bool any_missing_from(const bitfield& other) const {
    for (std::size_t i = 0; i < words_.size(); ++i)
      if (words_[i] & ~other.words_[i]) return true;
    return false;
  }

  template <class Fn>
  void for_each_set(Fn&& fn) const {
    for (std::size_t w = 0; w < words_.size(); ++w)
      for (std::uint64_t bits = words_[w]; bits; bits &= bits - 1)
        fn(static_cast<std::uint32_t>(w * 64 + std::countr_zero(bits)));
  }

  friend bool operator==(const bitfield&, const bitfield&) = default;

 private:
  std::vector<std::uint64_t> words_;  // bit i of the field is bit (i % 64) of word i / 64
  std::uint32_t size_ = 0;
  std::uint32_t count_ = 0;
};

// Standard base64 (RFC 4648 with padding). Decoding is strict: nullopt on any other character,
// bad padding or non-zero trailing bits.
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace swarmcoord::protocol
