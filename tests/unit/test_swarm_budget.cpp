// The swarm budget: caps on WebTorrent swarms, native swarms and native block-map bytes that
// hold across shards (several trackers and meshes sharing one budget, as the workers do),
// refusals that leave everything else as it was, and room that comes back when swarms and
// members go.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "server/swarm/mesh.hpp"
#include "server/swarm/swarm_budget.hpp"
#include "server/swarm/tracker.hpp"
#include "test_ids.hpp"

namespace {

namespace sw = swarmcoord::swarm;
namespace nv = swarmcoord::protocol::native;
namespace wt = swarmcoord::protocol::webtorrent;
using sw::budget_item;
using swarmcoord::test::make_id;

// A 1 GiB resource in 64 KiB blocks: the largest limits.max_blocks allows by default.
constexpr std::uint64_t big_size = 1ull << 30;
constexpr std::uint32_t big_block = 64 * 1024;
constexpr std::size_t big_blocks = big_size / big_block;  // 16384
constexpr std::size_t big_bitfield = big_blocks / 8;      // 2 KiB per member
constexpr std::size_t big_swarm = big_blocks + big_bitfield;  // a new swarm: 1-byte counts + one bitfield

std::string url(int n) { return "https://cdn.example/r/" + std::to_string(n) + ".bin"; }

// Joins peer `id` to swarm `key` of one shard; returns the reply (joined or error).
struct shard {
  sw::mesh m;
  std::vector<sw::mesh_outgoing> out;
  sw::join_outcome outcome{};

  explicit shard(std::shared_ptr<sw::swarm_budget> budget) : m(sw::mesh_config{}, 7, std::move(budget)) {}

  nv::server_message join(nv::peer_id id, const std::string& key, std::uint64_t size = big_size,
                          std::uint32_t block_size = big_block) {
    out.clear();
    nv::join j;
    j.swarm = key;
    j.size = size;
    j.block_size = block_size;
    outcome = m.on_join(sw::member_info{id * 10, id, 8, {}}, std::move(j), 0, out);
    REQUIRE(m.check_invariants().empty());
    REQUIRE_FALSE(out.empty());
    return out.front().message;
  }
  void leave(nv::peer_id id, const std::string& key) {
    out.clear();
    m.on_leave(sw::member_info{id * 10, id, 8, {}}, nv::leave{key}, 0, out);
    REQUIRE(m.check_invariants().empty());
  }
  void gone(nv::peer_id id) {
    out.clear();
    m.on_peer_gone(id, 0, out);
    REQUIRE(m.check_invariants().empty());
  }
};

bool joined(const nv::server_message& m) { return std::holds_alternative<nv::joined>(m); }
bool server_full(const nv::server_message& m) {
  auto* e = std::get_if<nv::error>(&m);
  return e && e->code == nv::error_code::server_full && e->ref == "join";
}

}  // namespace

TEST_CASE("swarm_budget: takes up to the limit, refuses beyond it, gives back", "[budget]") {
  sw::budget_limits limits;
  limits.native_swarms = 3;
  limits.block_map_bytes = 100;
  sw::swarm_budget b(limits);
  CHECK(b.take(budget_item::native_swarms, 2));
  CHECK(b.take(budget_item::native_swarms, 1));
  CHECK_FALSE(b.take(budget_item::native_swarms, 1));
  CHECK(b.used(budget_item::native_swarms) == 3);
  b.give_back(budget_item::native_swarms, 1);
  CHECK(b.take(budget_item::native_swarms, 1));
  // An amount over what is left takes nothing, not a part.
  CHECK(b.take(budget_item::block_map_bytes, 60));
  CHECK_FALSE(b.take(budget_item::block_map_bytes, 41));
  CHECK(b.used(budget_item::block_map_bytes) == 60);
  CHECK_FALSE(b.take(budget_item::block_map_bytes, sw::unlimited));
  CHECK(b.take(budget_item::block_map_bytes, 40));
  // Items are independent; an item without a limit takes anything.
  CHECK(b.take(budget_item::webtorrent_swarms, 1'000'000'000));
  CHECK(b.limit(budget_item::webtorrent_swarms) == sw::unlimited);
}

TEST_CASE("swarm_budget: threads racing for the last room never take more than the cap", "[budget]") {
  sw::budget_limits limits;
  limits.native_swarms = 1000;
  sw::swarm_budget b(limits);
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 5000; ++i)
        if (b.take(budget_item::native_swarms, 1)) ++taken;
    });
  for (auto& t : threads) t.join();
  CHECK(taken == 1000);
  CHECK(b.used(budget_item::native_swarms) == 1000);
}

TEST_CASE("mesh: limits.max_swarms holds across shards; a freed swarm makes room", "[budget][mesh]") {
  sw::budget_limits limits;
  limits.native_swarms = 3;
  auto budget = std::make_shared<sw::swarm_budget>(limits);
  shard a(budget), b(budget);
  CHECK(joined(a.join(1, url(1))));
  CHECK(joined(a.join(1, url(2))));
  CHECK(joined(b.join(2, url(3))));
  CHECK(budget->used(budget_item::native_swarms) == 3);

  // Full: a new swarm is refused on either shard, and the joiner's slot comes back.
  CHECK(server_full(b.join(2, url(4))));
  CHECK(b.outcome == sw::join_outcome::refused);
  CHECK(server_full(a.join(3, url(5))));
  CHECK(a.m.counters().limited_swarms == 1);
  CHECK(b.m.counters().limited_swarms == 1);
  CHECK(a.m.counters().errors[static_cast<std::size_t>(nv::error_code::server_full)] == 1);
  CHECK(a.m.counters().limited_memory == 0);
  CHECK(a.m.totals().swarms + b.m.totals().swarms == 3);
  CHECK(budget->used(budget_item::native_swarms) == 3);

  // Existing swarms go on: new members, re-joins.
  CHECK(joined(a.join(3, url(1))));
  CHECK(a.outcome == sw::join_outcome::joined);
  CHECK(joined(a.join(1, url(2))));
  // A refused re-join of a member leaves it a member (its slot is kept).
  CHECK(std::get<nv::error>(a.join(1, url(2), big_size / 2)).code == nv::error_code::swarm_mismatch);
  CHECK(a.outcome == sw::join_outcome::joined);

  // The last member of a swarm on shard a leaves: shard b may open one.
  a.leave(1, url(2));
  CHECK(budget->used(budget_item::native_swarms) == 2);
  CHECK(joined(b.join(2, url(4))));
  CHECK(server_full(b.join(2, url(6))));
  // A connection gone frees every swarm it was alone in.
  b.gone(2);
  CHECK(budget->used(budget_item::native_swarms) == 1);
  CHECK(joined(a.join(4, url(6))));
  CHECK(joined(b.join(5, url(7))));
}

TEST_CASE("mesh: limits.max_swarm_memory_mb holds the block maps across shards", "[budget][mesh]") {
  sw::budget_limits limits;
  limits.block_map_bytes = 2 * big_swarm + big_bitfield;
  auto budget = std::make_shared<sw::swarm_budget>(limits);
  shard a(budget), b(budget);
  CHECK(joined(a.join(1, url(1))));
  CHECK(budget->used(budget_item::block_map_bytes) == big_swarm);
  CHECK(joined(b.join(2, url(2))));
  CHECK(joined(a.join(3, url(1))));  // a second member: one more bitfield
  CHECK(budget->used(budget_item::block_map_bytes) == limits.block_map_bytes);
  CHECK(a.m.totals().block_map_bytes + b.m.totals().block_map_bytes == limits.block_map_bytes);

  // Full: neither a new swarm nor a new member of an existing one; a re-join needs nothing.
  CHECK(server_full(b.join(4, url(3))));
  CHECK(b.outcome == sw::join_outcome::refused);
  CHECK(server_full(b.join(4, url(2))));
  CHECK(b.m.counters().limited_memory == 2);
  CHECK(b.m.counters().limited_swarms == 0);
  CHECK(joined(a.join(3, url(1))));
  CHECK(budget->used(budget_item::native_swarms) == 2);  // the refused new swarm gave its slot back
  CHECK(budget->used(budget_item::block_map_bytes) == limits.block_map_bytes);

  // Room comes back as members leave and swarms go.
  a.leave(3, url(1));
  CHECK(budget->used(budget_item::block_map_bytes) == 2 * big_swarm);
  CHECK(joined(b.join(4, url(2))));
  b.gone(2);
  b.gone(4);
  CHECK(budget->used(budget_item::block_map_bytes) == big_swarm);
  CHECK(joined(b.join(5, url(3))));
  CHECK(budget->used(budget_item::native_swarms) == 2);
}

TEST_CASE("mesh: wider counts are room to take (the 256th member of a swarm)", "[budget][mesh]") {
  constexpr std::uint32_t blocks = 64;
  const std::size_t per_member = blocks / 8;
  sw::budget_limits limits;
  limits.block_map_bytes = blocks + 256 * per_member;  // enough for 256 bitfields, not for 2-byte counts
  auto budget = std::make_shared<sw::swarm_budget>(limits);
  shard a(budget);
  for (nv::peer_id id = 1; id <= 255; ++id) REQUIRE(joined(a.join(id, url(1), blocks * 1024, 1024)));
  CHECK(budget->used(budget_item::block_map_bytes) == blocks + 255 * per_member);
  CHECK(server_full(a.join(256, url(1), blocks * 1024, 1024)));
  CHECK(a.m.counters().limited_memory == 1);
  // With room for the wider counts it joins, and the counts take 2 bytes a block.
  auto roomier = std::make_shared<sw::swarm_budget>(sw::budget_limits{sw::unlimited, sw::unlimited, 10'000});
  shard c(roomier);
  for (nv::peer_id id = 1; id <= 256; ++id) REQUIRE(joined(c.join(id, url(1), blocks * 1024, 1024)));
  CHECK(roomier->used(budget_item::block_map_bytes) == 2 * blocks + 256 * per_member);
  CHECK(c.m.availability(url(1)) == std::vector<std::uint32_t>(blocks, 0));
}

TEST_CASE("mesh: a shard that goes away gives back what its swarms held", "[budget][mesh]") {
  auto budget = std::make_shared<sw::swarm_budget>();
  {
    shard a(budget);
    a.join(1, url(1));
    a.join(2, url(1));
    a.join(2, url(2));
    CHECK(budget->used(budget_item::native_swarms) == 2);
    CHECK(budget->used(budget_item::block_map_bytes) == 2 * big_swarm + big_bitfield);
  }
  CHECK(budget->used(budget_item::native_swarms) == 0);
  CHECK(budget->used(budget_item::block_map_bytes) == 0);
}

TEST_CASE("tracker: tracker.max_swarms holds across shards; refused pairs are released", "[budget][tracker]") {
  sw::budget_limits limits;
  limits.webtorrent_swarms = 2;
  auto budget = std::make_shared<sw::swarm_budget>(limits);
  sw::tracker a({}, 1, budget), b({}, 2, budget);
  const auto from = sw::ip_address::v4(10, 0, 0, 1);
  std::vector<sw::outgoing> out;
  auto announce = [&](sw::tracker& t, sw::connection_id conn, int ih, int peer, std::uint32_t ticket = 0) {
    out.clear();
    wt::announce an;
    an.info_hash = make_id('I', ih);
    an.peer_id = make_id('P', peer);
    an.event = wt::announce_event::started;
    t.on_announce(conn, from, std::move(an), 1000, out, ticket);
    REQUIRE(t.check_invariants().empty());
    REQUIRE(out.size() == 1);
    return out.front();
  };
  CHECK(std::holds_alternative<wt::announce_response>(announce(a, 1, 1, 1).message));
  CHECK(std::holds_alternative<wt::announce_response>(announce(b, 2, 2, 2).message));

  auto refused = announce(a, 1, 3, 1, 77);
  CHECK(refused.to == 1);
  auto* e = std::get_if<wt::request_error>(&refused.message);
  REQUIRE(e);
  CHECK(e->reason == wt::error_reason::server_full);
  CHECK(e->info_hash == make_id('I', 3));  // the warning shape: the client keeps its socket
  CHECK(a.counters().limited_swarms == 1);
  CHECK(a.counters().errors[static_cast<std::size_t>(wt::error_reason::server_full)] == 1);
  std::vector<sw::released_peer> released;
  a.take_released(released);
  REQUIRE(released.size() == 1);
  CHECK(released[0].conn == 1);
  CHECK(released[0].info_hash == make_id('I', 3));
  CHECK(released[0].peer_id == make_id('P', 1));
  CHECK(released[0].ticket == 77);
  CHECK(a.totals().swarms + b.totals().swarms == 2);
  CHECK(std::holds_alternative<wt::request_error>(announce(b, 2, 4, 2).message));

  // Existing swarms take new peers.
  CHECK(std::get<wt::announce_response>(announce(b, 3, 2, 3).message).incomplete == 2);
  // Their peers gone, swarms make room on any shard.
  b.on_connection_closed(2);
  b.on_connection_closed(3);
  CHECK(budget->used(budget_item::webtorrent_swarms) == 1);
  CHECK(std::holds_alternative<wt::announce_response>(announce(a, 1, 3, 1).message));
  // A stopped event and expiry free theirs too.
  wt::announce stop;
  stop.info_hash = make_id('I', 3);
  stop.peer_id = make_id('P', 1);
  stop.event = wt::announce_event::stopped;
  a.on_announce(1, from, std::move(stop), 1000, out);
  CHECK(budget->used(budget_item::webtorrent_swarms) == 1);
  a.expire(1000 + 10'000'000);
  CHECK(budget->used(budget_item::webtorrent_swarms) == 0);
}
