// Neighbour planning: how useful a candidate is, which candidates a step looks at, the plan of
// one member (with fair-share take-backs from full holders), and the neighbour messages a
// step produces. See mesh.hpp for the rules.
#include "server/swarm/mesh.hpp"

#include <algorithm>
#include <bit>

namespace swarmcoord::swarm {

// ------------------------------------------------------------------ planning

double mesh::usefulness(const member& p, const member& q) const {
  const double gives = q.have.count_missing_from(p.have);
  const double takes = p.have.count_missing_from(q.have);
  return gives + config_.give_weight * takes;
}

std::size_t mesh::useful_neighbors(const swarm_state& s, std::uint32_t slot) const {
  const member& m = s.slots[slot];
  std::size_t n = 0;
  for (const auto& l : m.links)
    if (s.slots[l.slot].have.count_missing_from(m.have) > 0) ++n;
  return n;
}

void mesh::gather_candidates(swarm_state& s, std::uint32_t slot, std::vector<std::uint32_t>& out) {
  out.clear();
  if (++s.epoch == 0) {  // wrapped: old marks could collide
    for (auto& m : s.slots) m.epoch = 0;
    s.epoch = 1;
  }
  member& p = s.slots[slot];
  p.epoch = s.epoch;
  for (const auto& l : p.links) s.slots[l.slot].epoch = s.epoch;
  auto consider = [&](std::uint32_t q) {
    if (s.slots[q].epoch == s.epoch) return false;
    s.slots[q].epoch = s.epoch;
    if (distrust(p, s.slots[q])) return false;
    out.push_back(q);
    return true;
  };
  if (s.all.size() <= config_.exhaustive_below) {
    for (auto q : s.all) consider(q);
    return;
  }
  // Bounded sampling: never a scan of a large swarm.
  auto sample = [&](const std::vector<std::uint32_t>& from, std::size_t want) {
    if (from.size() <= want) {
      for (auto q : from) consider(q);
      return;
    }
    std::uniform_int_distribution<std::size_t> pick(0, from.size() - 1);
    std::size_t added = 0;
    for (std::size_t tries = 0; tries < want * 2 && added < want; ++tries)
      if (consider(from[pick(rng_)])) ++added;
  };
  for (auto k : {site_set, subnet_set, asn_set, country_set}) {
    const auto key = bucket_key(k, p.info.where);
    if (key == 0 && k != subnet_set) continue;
    if (auto it = s.buckets[k].find(key); it != s.buckets[k].end()) sample(it->second, 12);
  }
  if (!p.have.complete()) sample(s.holders, 24);
  sample(s.all, 16);
  if (out.size() > config_.max_candidates) out.resize(config_.max_candidates);
}

void mesh::plan(swarm_state& s, std::uint32_t slot, change_set& changes) {
  ++counters_.plans;
  if (s.slots[slot].links.size() >= s.slots[slot].info.max_neighbors) return;
  gather_candidates(s, slot, candidates_);

  struct scored {
    std::uint32_t slot;
    int band;  // log2 band of usefulness: within a band, candidates count as comparable
    bool needy;  // p would give it blocks and nobody it is linked to does (fair share)
    nv::locality where;
    double useful;
    std::uint64_t tiebreak;
  };
  std::vector<scored> list;
  list.reserve(candidates_.size());
  {
    const member& p = s.slots[slot];
    auto without_giver = [&](const member& m) {
      for (const auto& l : m.links)
        if (s.slots[l.slot].have.any_missing_from(m.have)) return false;
      return true;
    };
    for (auto q : candidates_) {
      const member& m = s.slots[q];
      const double u = usefulness(p, m);
      // x4 so that a single block given (worth give_weight) still lands above band 0.
      const int band = u > 0 ? std::bit_width(static_cast<std::uint64_t>(u * 4) | 1) : 0;
      const bool needy = !p.have.empty() && p.have.any_missing_from(m.have) && without_giver(m);
      list.push_back({q, band, needy, locality_between(p.info.where, m.info.where), u, rng_()});
    }
  }
  std::sort(list.begin(), list.end(), [](const scored& a, const scored& b) {
    if (a.band != b.band) return a.band > b.band;
    if (a.needy != b.needy) return a.needy;
    if (a.where != b.where) return a.where < b.where;
    if (a.useful != b.useful) return a.useful > b.useful;
    return a.tiebreak < b.tiebreak;
  });

  auto room = [&](std::uint32_t m) { return s.slots[m].links.size() < s.slots[m].info.max_neighbors; };
  auto gives_to = [&](std::uint32_t q, std::uint32_t p) {
    return s.slots[q].have.count_missing_from(s.slots[p].have) > 0;
  };
  bool has_giver = useful_neighbors(s, slot) > 0;
  std::size_t takebacks = 0;
  for (const auto& c : list) {
    if (!room(slot) || c.band == 0) break;
    if (room(c.slot)) {
      connect(s, slot, c.slot, changes);
      has_giver = has_giver || gives_to(c.slot, slot);
      continue;
    }
    // Fair share: a needy peer with nobody to give it anything takes a link of a full holder
    // from a peer that keeps other givers.
    if (!has_giver && gives_to(c.slot, slot) && takebacks < config_.max_takebacks_per_plan) {
      ++takebacks;
      if (take_back(s, slot, c.slot, changes)) {
        connect(s, slot, c.slot, changes);
        has_giver = true;
      }
    }
  }
  // Nobody useful anywhere (a fresh swarm where all fetch from the origin): a couple of links
  // anyway, so that data channels are ready when blocks arrive. Not for a seed: its band-0
  // candidates are seeds too, and a link between two seeds can never carry a block.
  if (s.slots[slot].links.empty() && !s.slots[slot].have.complete()) {
    std::size_t added = 0;
    for (const auto& c : list)
      if (c.band == 0 && added < 2 && room(slot) && room(c.slot)) {
        connect(s, slot, c.slot, changes);
        ++added;
      }
  }
}

bool mesh::take_back(swarm_state& s, std::uint32_t needy, std::uint32_t holder, change_set& changes) {
  const member& h = s.slots[holder];
  std::uint32_t best = 0;
  std::size_t best_givers = 0;
  bool found = false;
  for (const auto& l : h.links) {
    const std::uint32_t r = l.slot;
    if (r == needy) continue;
    // r loses nothing if the holder gives it nothing; else r must keep another giver.
    const bool holder_gives_r = h.have.count_missing_from(s.slots[r].have) > 0;
    const std::size_t givers = useful_neighbors(s, r);
    const std::size_t left = holder_gives_r ? givers - 1 : givers + 1'000'000;
    if (left >= 1 && left > best_givers) {
      best = r;
      best_givers = left;
      found = true;
    }
  }
  if (!found) return false;
  disconnect(s, holder, best, changes);
  ++counters_.links_taken_back;
  // best now has a free slot: fill it on the next replan.
  if (!s.slots[best].dirty) {
    s.slots[best].dirty = true;
    s.dirty.push_back(best);
  }
  return true;
}

void mesh::flush(swarm_state& s, change_set& changes, std::vector<mesh_outgoing>& out) {
  for (auto& [slot, msg] : changes.by_slot) {
    const member& m = s.slots[slot];
    if (!m.alive) continue;
    msg.swarm = s.key;
    out.push_back({m.info.conn, std::move(msg)});
  }
  changes.by_slot.clear();
}

}  // namespace swarmcoord::swarm
