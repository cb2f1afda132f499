// mesh_bench: how long the mesh takes to plan the neighbours of a joining peer in swarms of
// 1k, 10k and 100k members of a 4096-block resource, and roughly how much memory a member
// costs. Standalone, single-threaded, seeded (same numbers for the same binary and machine).
//
//   mesh_bench [samples [max_members]]   (defaults: 3000 timed joins per size; up to 100000)
//
// The population is a mix: a few seeds, many partial holders (some downloading in order,
// some with scattered blocks), the rest empty; peers spread over operator sites, /24
// subnets, ASNs and countries with a skew towards the big ones. Each timed sample is one
// on_join() call (join -> joined + neighbors, the planning included) measured with
// steady_clock; the joiner then disconnects (untimed) so the swarm keeps its size. The same
// calls are also measured in thread CPU time (cpu_*), which a busy machine's preemptions
// don't inflate: when wall p99/max are far above cpu p99/max, the machine was busy.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <time.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "protocol/native.hpp"
#include "server/swarm/mesh.hpp"

namespace {

namespace nv = swarmcoord::protocol::native;
using swarmcoord::swarm::location;
using swarmcoord::swarm::mesh;
using swarmcoord::swarm::mesh_config;
using swarmcoord::swarm::mesh_outgoing;
using swarmcoord::swarm::member_info;

constexpr std::uint32_t blocks = 4096;
constexpr std::uint32_t block_size = 256 * 1024;
const std::string key = "https://cdn.example/live/event-1080p.mp4";

double thread_cpu_us() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

std::size_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  return mallinfo2().uordblks;
#else
  return 0;
#endif
}

class population {
 public:
  explicit population(std::uint64_t seed, std::size_t swarm_size) : rng_(seed), size_(swarm_size) {}

  location where() {
    location l;
    // 15% of peers sit behind one of 40 operator sites (ISP caches, offices).
    if (chance(0.15)) l.site = 1 + skewed(40);
    // About 6 peers per /24 on average: a few households and offices share one.
    l.subnet = (std::uint64_t{1} << 63) | skewed(std::max<std::size_t>(size_ / 6, 16));
    l.asn = chance(0.97) ? 64512 + skewed(400) : 0;
    l.country = chance(0.98) ? static_cast<std::uint16_t>(0x4141 + skewed(40)) : 0;
    return l;
  }

  nv::join join() {
    nv::join j;
    j.swarm = key;
    j.size = std::uint64_t{blocks - 1} * block_size + 12345;
    j.block_size = block_size;
    const double r = uniform();
    if (r < 0.04) {
      j.have = nv::join::holding::all;
    } else if (r < 0.64) {
      std::vector<std::uint8_t> bytes((blocks + 7) / 8, 0);
      const double progress = uniform();
      if (chance(0.5)) {  // in order, as a player fetches, with a few blocks ahead
        const auto upto = static_cast<std::uint32_t>(progress * blocks);
        for (std::uint32_t b = 0; b < upto; ++b) bytes[b / 8] |= static_cast<std::uint8_t>(0x80u >> (b % 8));
        for (int i = 0; i < 16; ++i) {
          const auto b = static_cast<std::uint32_t>(rng_() % blocks);
          bytes[b / 8] |= static_cast<std::uint8_t>(0x80u >> (b % 8));
        }
      } else {  // scattered, as a swarm-first fetcher gets them
        std::bernoulli_distribution bit(std::max(0.01, progress));
        for (std::uint32_t b = 0; b < blocks; ++b)
          if (bit(rng_)) bytes[b / 8] |= static_cast<std::uint8_t>(0x80u >> (b % 8));
      }
      j.have = nv::join::holding::some;
      j.bitfield_bytes.assign(bytes.begin(), bytes.end());
    }
    return j;
  }

  std::uint32_t max_neighbors() {
    const double r = uniform();
    return r < 0.8 ? 8 : r < 0.9 ? 4 : 16;
  }

 private:
  std::mt19937_64 rng_;
  std::size_t size_;
  double uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  bool chance(double p) { return uniform() < p; }
  // 1..n with small values much more likely (a rough Zipf).
  std::uint32_t skewed(std::size_t n) {
    const double u = uniform();
    return 1 + static_cast<std::uint32_t>(static_cast<double>(n - 1) * u * u * u);
  }
};

struct result {
  std::size_t members;
  double fill_s;
  double bytes_per_member;
  double p50, p99, max, mean;
  double cpu_p50, cpu_p99, cpu_max;
  std::size_t links;
};

double percentile(std::vector<double>& v, double p) {
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

result run(std::size_t members, std::size_t samples, std::uint64_t seed) {
  population pop(seed, members);
  std::vector<mesh_outgoing> out;
  out.reserve(64);

  const std::size_t heap_before = heap_in_use();
  auto m = std::make_unique<mesh>(mesh_config{}, seed);
  const auto fill_start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < members; ++i) {
    const member_info who{i + 1, 0x1000000 + i, pop.max_neighbors(), pop.where()};
    m->on_join(who, pop.join(), 0, out);
    out.clear();
    if (i % 256 == 255) {  // the daemon re-plans on a timer; take-backs leave dirty members
      m->replan(0, out);
      out.clear();
    }
  }
  m->replan(0, out);
  out.clear();
  const double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_start).count();
  const std::size_t heap_after = heap_in_use();

  std::vector<double> us, cpu;
  us.reserve(samples);
  cpu.reserve(samples);
  for (std::size_t i = 0; i < samples; ++i) {
    const nv::peer_id id = 0x8000000000 + i;
    const member_info who{id, id, pop.max_neighbors(), pop.where()};
    nv::join j = pop.join();  // built outside the timed region
    const double cpu_start = thread_cpu_us();
    const auto start = std::chrono::steady_clock::now();
    m->on_join(who, std::move(j), 0, out);
    const auto stop = std::chrono::steady_clock::now();
    cpu.push_back(thread_cpu_us() - cpu_start);
    us.push_back(std::chrono::duration<double, std::micro>(stop - start).count());
    if (out.size() < 2) {
      std::fprintf(stderr, "join produced no joined/neighbors messages\n");
      std::exit(1);
    }
    out.clear();
    m->on_peer_gone(id, 0, out);
    out.clear();
    if (i % 64 == 63) {
      m->replan(0, out);
      out.clear();
    }
  }
  if (auto broken = m->check_invariants(); !broken.empty()) {
    std::fprintf(stderr, "mesh invariant broken: %s\n", broken.c_str());
    std::exit(1);
  }

  result r{};
  r.members = members;
  r.fill_s = fill_s;
  r.bytes_per_member = heap_after > heap_before ? static_cast<double>(heap_after - heap_before) / static_cast<double>(members) : 0;
  double sum = 0;
  for (double v : us) sum += v;
  r.mean = sum / static_cast<double>(us.size());
  r.p50 = percentile(us, 0.50);
  r.p99 = percentile(us, 0.99);
  r.max = *std::max_element(us.begin(), us.end());
  r.cpu_p50 = percentile(cpu, 0.50);
  r.cpu_p99 = percentile(cpu, 0.99);
  r.cpu_max = *std::max_element(cpu.begin(), cpu.end());
  r.links = m->totals().links;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t samples = 3000;
  if (argc > 1) samples = std::strtoul(argv[1], nullptr, 10);
  if (samples == 0) samples = 1;
  std::size_t max_members = 100000;
  if (argc > 2) max_members = std::strtoul(argv[2], nullptr, 10);
  std::printf("mesh_bench: on_join planning time, %u-block resource, %zu timed joins per swarm size\n", blocks, samples);
  std::printf("%8s %7s %12s %8s %8s %8s %8s %8s %8s %8s %8s\n", "members", "fill_s", "bytes/member", "links", "p50_us",
              "p99_us", "max_us", "mean_us", "cpu_p50", "cpu_p99", "cpu_max");
  const auto all_start = std::chrono::steady_clock::now();
  for (std::size_t members : {1000u, 10000u, 100000u}) {
    if (members > max_members) break;
    const result r = run(members, samples, 42 + members);
    std::printf("%8zu %7.2f %12.0f %8zu %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f\n", r.members, r.fill_s,
                r.bytes_per_member, r.links, r.p50, r.p99, r.max, r.mean, r.cpu_p50, r.cpu_p99, r.cpu_max);
    std::fflush(stdout);
  }
  std::printf("total %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - all_start).count());
  if (heap_in_use() == 0) std::printf("(bytes/member: not measured, needs glibc >= 2.33 mallinfo2)\n");
  return 0;
}
