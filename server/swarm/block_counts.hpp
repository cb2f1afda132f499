#pragma once
// Per-block availability of one native swarm: how many of its members hold each block. A count
// never exceeds the number of members, so the counts are kept in the narrowest of 1, 2 or 4
// bytes that holds the member count, widened as the swarm grows (never narrowed): a 1 GiB
// resource in 64 KiB blocks costs 16 KiB in a swarm of up to 255 members, not 64 KiB.
// Plain value; one owner thread.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

#include "protocol/bitfield.hpp"

namespace swarmcoord::swarm {

class block_counts {
 public:
  block_counts() = default;
  explicit block_counts(std::uint32_t blocks) : counts_(std::vector<std::uint8_t>(blocks, 0)) {}

  std::uint32_t size() const {
    return std::visit([](const auto& v) { return static_cast<std::uint32_t>(v.size()); }, counts_);
  }
  // Bytes the counts take now; bytes they take once fit(members) ran.
  std::size_t bytes() const { return std::size_t{size()} * width(); }
  std::size_t bytes_after_fit(std::size_t members) const {
    return std::size_t{size()} * std::max(width(), width_for(members));
  }
  // Bytes the counts of a new swarm of `blocks` blocks and one member take.
  static std::size_t bytes_for_one(std::uint32_t blocks) { return blocks; }

  // Makes room for counts up to `members`.
  void fit(std::size_t members) {
    const unsigned w = width_for(members);
    if (w <= width()) return;
    if (w == 2) counts_ = widened<std::uint16_t>();
    else counts_ = widened<std::uint32_t>();
  }

  // +1 (or -1) for every block `have` holds; have.size() == size().
  void add(const protocol::bitfield& have) {
    std::visit([&](auto& v) { have.for_each_set([&](std::uint32_t b) { ++v[b]; }); }, counts_);
  }
  void remove(const protocol::bitfield& have) {
    std::visit([&](auto& v) { have.for_each_set([&](std::uint32_t b) { --v[b]; }); }, counts_);
  }
  void increment(std::uint32_t block) {
    std::visit([&](auto& v) { ++v[block]; }, counts_);
  }

  std::vector<std::uint32_t> to_vector() const {
    return std::visit([](const auto& v) { return std::vector<std::uint32_t>(v.begin(), v.end()); }, counts_);
  }

 private:
  static unsigned width_for(std::size_t members) { return members <= 0xff ? 1 : members <= 0xffff ? 2 : 4; }
  unsigned width() const {
    return std::visit([](const auto& v) { return static_cast<unsigned>(sizeof(v[0])); }, counts_);
  }
  template <class T>
  std::vector<T> widened() const {
    return std::visit([](const auto& v) { return std::vector<T>(v.begin(), v.end()); }, counts_);
  }

  std::variant<std::vector<std::uint8_t>, std::vector<std::uint16_t>, std::vector<std::uint32_t>> counts_;
};

}  // namespace swarmcoord::swarm
