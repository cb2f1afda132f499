// The mesh's bookkeeping of members: the index sets a candidate search draws from (all,
// holders, and one bucket per locality tier), membership, and symmetric links with the
// neighbour changes they cause. See mesh.hpp for the rules.
#include "server/swarm/mesh.hpp"

#include <algorithm>

namespace swarmcoord::swarm {

// ------------------------------------------------------------------ index sets

std::uint64_t mesh::bucket_key(set_kind k, const location& l) {
  switch (k) {
    case site_set: return l.site;
    case subnet_set: return l.subnet;
    case asn_set: return l.asn;
    case country_set: return l.country;
    default: return 0;
  }
}

std::vector<std::uint32_t>* mesh::set_for(swarm_state& s, set_kind k, const member& m) {
  if (k == all_set) return &s.all;
  if (k == holder_set) return &s.holders;
  const auto key = bucket_key(k, m.info.where);
  if (key == 0 && k != subnet_set) return nullptr;  // unknown site/asn/country: no bucket
  return &s.buckets[k][key];
}

void mesh::set_insert(swarm_state& s, set_kind k, std::uint32_t slot) {
  member& m = s.slots[slot];
  if (auto* v = set_for(s, k, m)) {
    m.pos[k] = static_cast<std::uint32_t>(v->size());
    v->push_back(slot);
  }
}

void mesh::set_erase(swarm_state& s, set_kind k, std::uint32_t slot) {
  member& m = s.slots[slot];
  std::vector<std::uint32_t>* v = nullptr;
  bucket_map::iterator bucket;
  if (k == all_set) v = &s.all;
  else if (k == holder_set) v = &s.holders;
  else {
    const auto key = bucket_key(k, m.info.where);
    if (key == 0 && k != subnet_set) return;
    bucket = s.buckets[k].find(key);
    v = &bucket->second;
  }
  const std::uint32_t last = v->back();
  (*v)[m.pos[k]] = last;
  s.slots[last].pos[k] = m.pos[k];
  v->pop_back();
  if (k >= site_set && v->empty()) s.buckets[k].erase(bucket);
}

// ------------------------------------------------------------------ members and links

std::uint32_t mesh::add_member(swarm_state& s, const member_info& who, protocol::bitfield&& have) {
  std::uint32_t slot;
  if (s.free_slots.empty()) {
    slot = static_cast<std::uint32_t>(s.slots.size());
    s.slots.emplace_back();
  } else {
    slot = s.free_slots.back();
    s.free_slots.pop_back();
  }
  member& m = s.slots[slot];
  m = member{};
  m.alive = true;
  m.info = who;
  m.have = std::move(have);
  s.by_id.emplace(who.id, slot);
  for (auto k : {all_set, site_set, subnet_set, asn_set, country_set}) set_insert(s, k, slot);
  if (!m.have.empty()) set_insert(s, holder_set, slot);
  s.availability.add(m.have);
  if (m.have.complete()) ++s.seeds;
  return slot;
}

void mesh::remove_member(swarm_state& s, std::uint32_t slot, change_set& changes) {
  std::vector<std::uint32_t> former;
  for (const auto& l : s.slots[slot].links) former.push_back(l.slot);
  for (auto other : former) disconnect(s, slot, other, changes);
  changes.by_slot.erase(slot);  // the leaver is told nothing more

  member& m = s.slots[slot];
  s.availability.remove(m.have);
  if (m.have.complete()) --s.seeds;
  for (auto k : {all_set, site_set, subnet_set, asn_set, country_set}) set_erase(s, k, slot);
  if (!m.have.empty()) set_erase(s, holder_set, slot);
  s.by_id.erase(m.info.id);
  m = member{};
  s.free_slots.push_back(slot);

  // Refill the neighbours that lost a link, now, while candidates are at hand.
  for (auto other : former)
    if (s.slots[other].alive) plan(s, other, changes);
}

bool mesh::linked(const swarm_state& s, std::uint32_t a, std::uint32_t b) const {
  const auto& links = s.slots[a].links;
  return std::any_of(links.begin(), links.end(), [&](const link& l) { return l.slot == b; });
}

bool mesh::distrust(const member& a, const member& b) {
  auto has = [](const std::vector<nv::peer_id>& ids, nv::peer_id id) { return std::find(ids.begin(), ids.end(), id) != ids.end(); };
  return has(a.distrusted, b.info.id) || has(b.distrusted, a.info.id);
}

void mesh::connect(swarm_state& s, std::uint32_t initiator, std::uint32_t other, change_set& changes) {
  member& a = s.slots[initiator];
  member& b = s.slots[other];
  a.links.push_back({other, true});
  b.links.push_back({initiator, false});
  const auto where = locality_between(a.info.where, b.info.where);
  ++counters_.neighbors_assigned[static_cast<std::size_t>(where)];
  changes.by_slot[initiator].add.push_back({b.info.id, true, where, b.have.count()});
  changes.by_slot[other].add.push_back({a.info.id, false, where, a.have.count()});
}

void mesh::remember_unlinked(member& m, nv::peer_id other) {
  if (config_.unlinked_grace_ms <= 0) return;
  auto& lately = m.recently_unlinked;
  // Kept in the order of removal, which is the order of expiry (the grace is constant).
  const auto live = std::find_if(lately.begin(), lately.end(), [&](const unlinked& u) { return u.until > now_; });
  lately.erase(lately.begin(), live);
  if (lately.size() >= max_unlinked) lately.erase(lately.begin());
  lately.push_back({other, now_ + config_.unlinked_grace_ms});
}

bool mesh::unlinked_lately(const member& m, nv::peer_id other, mesh_time_ms now) {
  return std::any_of(m.recently_unlinked.begin(), m.recently_unlinked.end(),
                     [&](const unlinked& u) { return u.peer == other && u.until > now; });
}

void mesh::disconnect(swarm_state& s, std::uint32_t a, std::uint32_t b, change_set& changes) {
  auto drop = [&](std::uint32_t from, std::uint32_t to) {
    auto& links = s.slots[from].links;
    links.erase(std::find_if(links.begin(), links.end(), [&](const link& l) { return l.slot == to; }));
    // A link made and unmade within one operation is never announced at all (and nothing of
    // it can be on its way).
    auto& msg = changes.by_slot[from];
    const auto id = s.slots[to].info.id;
    auto added = std::find_if(msg.add.begin(), msg.add.end(), [&](const nv::neighbor& n) { return n.id == id; });
    if (added != msg.add.end()) {
      msg.add.erase(added);
    } else {
      msg.remove.push_back(id);
      remember_unlinked(s.slots[from], id);
    }
  };
  drop(a, b);
  drop(b, a);
}

}  // namespace swarmcoord::swarm
