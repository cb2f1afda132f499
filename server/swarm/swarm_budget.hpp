#pragma once
// What the swarms of every shard may hold together: WebTorrent swarms, native swarms, and the
// bytes of native block maps (each swarm's per-block counts and its members' bitfields).
// Shards take room before they create a swarm or grow a block map, and give it back when the
// swarm or the member goes; a refusal leaves everything as it was. One instance is shared by
// the tracker and mesh of every worker, so that the caps hold for the process, whichever
// worker owns a swarm.
// Thread-safe: the figures are atomics; taking is a compare-and-swap loop, so that shards
// racing for the last room can't take more than the cap between them.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace swarmcoord::swarm {

enum class budget_item : std::uint8_t { webtorrent_swarms, native_swarms, block_map_bytes };
inline constexpr std::size_t budget_item_count = 3;

inline constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

struct budget_limits {
  std::size_t webtorrent_swarms = unlimited;  // tracker.max_swarms
  std::size_t native_swarms = unlimited;      // limits.max_swarms
  std::size_t block_map_bytes = unlimited;    // limits.max_swarm_memory_mb
};

class swarm_budget {
 public:
  swarm_budget() = default;  // no cap at all
  explicit swarm_budget(const budget_limits& limits) {
    at(budget_item::webtorrent_swarms).limit = limits.webtorrent_swarms;
    at(budget_item::native_swarms).limit = limits.native_swarms;
    at(budget_item::block_map_bytes).limit = limits.block_map_bytes;
  }
  swarm_budget(const swarm_budget&) = delete;
  swarm_budget& operator=(const swarm_budget&) = delete;

  // Takes `amount` if it fits under the limit; false (and nothing taken) if not.
  bool take(budget_item item, std::size_t amount) {
    pool& p = at(item);
    std::size_t used = p.used.load(std::memory_order_relaxed);
    do {
      if (amount > p.limit || used > p.limit - amount) return false;
    } while (!p.used.compare_exchange_weak(used, used + amount, std::memory_order_relaxed));
    return true;
  }
  void give_back(budget_item item, std::size_t amount) { at(item).used.fetch_sub(amount, std::memory_order_relaxed); }

  std::size_t used(budget_item item) const { return at(item).used.load(std::memory_order_relaxed); }
  std::size_t limit(budget_item item) const { return at(item).limit; }

 private:
  // One cache line each: shards of different workers take different items at once.
  struct alignas(64) pool {
    std::atomic<std::size_t> used{0};
    std::size_t limit = unlimited;
  };
  pool& at(budget_item item) { return pools_[static_cast<std::size_t>(item)]; }
  const pool& at(budget_item item) const { return pools_[static_cast<std::size_t>(item)]; }
  std::array<pool, budget_item_count> pools_;
};

}  // namespace swarmcoord::swarm
