#include "protocol/keyed_hash.hpp"

#include <random>

namespace swarmcoord::protocol {
namespace {
const std::uint64_t key = [] {
  std::random_device rd;
  return (std::uint64_t{rd()} << 32) ^ rd();
}();
}  // namespace

std::uint64_t hash_key() { return key; }

}  // namespace swarmcoord::protocol
