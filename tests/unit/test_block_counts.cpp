// The per-block availability counts of a native swarm: 1 byte a block while the swarm has up
// to 255 members, widened to 2 and 4 bytes as it grows, without losing a count.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "protocol/bitfield.hpp"
#include "server/swarm/block_counts.hpp"
#include "server/swarm/mesh.hpp"

namespace sw = swarmcoord::swarm;
namespace nv = swarmcoord::protocol::native;
using swarmcoord::protocol::bitfield;

TEST_CASE("block_counts: one byte a block up to 255 members, widened without losing counts", "[mesh]") {
  sw::block_counts c(100);
  CHECK(c.bytes() == 100);
  CHECK(c.bytes_after_fit(255) == 100);
  CHECK(c.bytes_after_fit(256) == 200);
  CHECK(c.bytes_after_fit(65536) == 400);
  bitfield some(100);
  some.set(3);
  some.set(99);
  for (int i = 0; i < 255; ++i) c.add(some);
  c.increment(50);
  c.fit(255);
  CHECK(c.bytes() == 100);
  c.fit(256);
  CHECK(c.bytes() == 200);
  c.add(some);
  auto v = c.to_vector();
  CHECK(v[3] == 256);
  CHECK(v[99] == 256);
  CHECK(v[50] == 1);
  CHECK(v[0] == 0);
  c.fit(70000);
  CHECK(c.bytes() == 400);
  c.remove(some);
  CHECK(c.to_vector()[3] == 255);
  c.fit(10);  // never narrowed
  CHECK(c.bytes() == 400);
}

TEST_CASE("mesh: availability counts go on past 255 and 65,535 holders of a block", "[mesh]") {
  sw::mesh m(sw::mesh_config{}, 3);
  std::vector<sw::mesh_outgoing> out;
  const std::string key = "https://cdn.example/widen.bin";
  auto join = [&](nv::peer_id id, bool seed) {
    nv::join j;
    j.swarm = key;
    j.size = 4 * 1024;
    j.block_size = 1024;
    if (seed) j.have = nv::join::holding::all;
    out.clear();
    REQUIRE(m.on_join(sw::member_info{id, id, 1, {}}, std::move(j), 0, out) == sw::join_outcome::joined);
  };
  // Seeds, and one member that holds nothing.
  join(1, false);
  for (nv::peer_id id = 2; id <= 70'001; ++id) join(id, true);
  CHECK(m.availability(key) == std::vector<std::uint32_t>(4, 70'000));
  // A have of the empty member counts on top; a leave counts down.
  out.clear();
  m.on_have(sw::member_info{1, 1, 1, {}}, nv::have{key, {2}}, out);
  CHECK(m.availability(key) == std::vector<std::uint32_t>{70'000, 70'000, 70'001, 70'000});
  m.on_leave(sw::member_info{2, 2, 1, {}}, nv::leave{key}, 0, out);
  CHECK(m.availability(key) == std::vector<std::uint32_t>{69'999, 69'999, 70'000, 69'999});
  CHECK(m.check_invariants().empty());
}
