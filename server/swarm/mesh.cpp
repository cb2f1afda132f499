#include "server/swarm/mesh.hpp"

#include <algorithm>
#include <bit>

namespace swarmcoord::swarm {

nv::locality locality_between(const location& a, const location& b) {
  if (a.site != 0 && a.site == b.site) return nv::locality::site;
  if (a.subnet == b.subnet) return nv::locality::subnet;
  if (a.asn != 0 && a.asn == b.asn) return nv::locality::asn;
  if (a.country != 0 && a.country == b.country) return nv::locality::country;
  return nv::locality::remote;
}

std::size_t signal_kind_index(std::string_view kind) {
  if (kind == "offer") return 0;
  if (kind == "answer") return 1;
  if (kind == "candidate") return 2;
  return 3;
}

mesh::mesh(mesh_config config, std::uint64_t seed, std::shared_ptr<swarm_budget> budget)
    : config_(config), rng_(seed), budget_(budget ? std::move(budget) : std::make_shared<swarm_budget>()) {}

mesh::~mesh() {
  if (!budget_) return;  // moved from
  std::size_t bytes = 0;
  for (const auto& [key, s] : swarms_) bytes += s.charged;
  budget_->give_back(budget_item::block_map_bytes, bytes);
  budget_->give_back(budget_item::native_swarms, swarms_.size());
}

// ------------------------------------------------------------------ messages

mesh::swarm_state* mesh::find_member(const std::string& key, nv::peer_id id, std::uint32_t& slot) {
  auto it = swarms_.find(key);
  if (it == swarms_.end()) return nullptr;
  auto m = it->second.by_id.find(id);
  if (m == it->second.by_id.end()) return nullptr;
  slot = m->second;
  return &it->second;
}

void mesh::refuse(std::vector<mesh_outgoing>& out, mesh_connection_id to, nv::error&& e) {
  ++counters_.errors[static_cast<std::size_t>(e.code)];
  out.push_back({to, std::move(e)});
}

join_outcome mesh::on_join(const member_info& who, nv::join&& j, mesh_time_ms now, std::vector<mesh_outgoing>& out) {
  now_ = now;
  auto fail = [&](nv::error_code code, std::string message) {
    auto sit = swarms_.find(j.swarm);
    const bool member = sit != swarms_.end() && sit->second.by_id.count(who.id);
    refuse(out, who.conn, nv::error{code, std::move(message), "join", j.swarm});
    return member ? join_outcome::joined : join_outcome::refused;
  };
  const std::uint64_t blocks64 = (j.size + j.block_size - 1) / j.block_size;
  if (blocks64 > config_.max_blocks)
    return fail(nv::error_code::too_many_blocks, "a resource may have at most " + std::to_string(config_.max_blocks) +
                                                     " blocks; use a larger block_size");
  const auto blocks = static_cast<std::uint32_t>(blocks64);
  auto it = swarms_.find(j.swarm);
  if (it != swarms_.end() && (it->second.size != j.size || it->second.block_size != j.block_size))
    return fail(nv::error_code::swarm_mismatch, "this swarm has size " + std::to_string(it->second.size) +
                                                    " and block_size " + std::to_string(it->second.block_size));
  protocol::bitfield have(blocks, j.have == nv::join::holding::all);
  if (j.have == nv::join::holding::some) {
    auto parsed = protocol::bitfield::from_bytes(j.bitfield_bytes, blocks);
    if (!parsed)
      return fail(nv::error_code::bad_bitfield, "join.have must be " + std::to_string((blocks + 7) / 8) +
                                                    " bytes (one bit per block) with unused bits clear");
    have = std::move(*parsed);
  }
  // Room first: a new swarm, and for a new member its bitfield and any widening of the counts
  // (a re-join replaces a bitfield of the same size). Nothing changes when there is none.
  const bool new_swarm = it == swarms_.end();
  const bool new_member = new_swarm || !it->second.by_id.count(who.id);
  std::size_t grow = 0;
  if (new_member)
    grow = bitfield_bytes(blocks) +
           (new_swarm ? block_counts::bytes_for_one(blocks)
                      : it->second.availability.bytes_after_fit(it->second.all.size() + 1) - it->second.availability.bytes());
  if (new_swarm && !budget_->take(budget_item::native_swarms, 1)) {
    ++counters_.limited_swarms;
    return fail(nv::error_code::server_full,
                "this server holds as many swarms as it may (limits.max_swarms); fetch from the origin");
  }
  if (grow > 0 && !budget_->take(budget_item::block_map_bytes, grow)) {
    if (new_swarm) budget_->give_back(budget_item::native_swarms, 1);
    ++counters_.limited_memory;
    return fail(nv::error_code::server_full,
                "this server's swarms hold as much memory as they may (limits.max_swarm_memory_mb); fetch from the origin");
  }
  if (new_swarm) {
    it = swarms_.emplace(j.swarm, swarm_state{}).first;
    auto& s = it->second;
    s.key = j.swarm;
    s.size = j.size;
    s.block_size = j.block_size;
    s.blocks = blocks;
    s.availability = block_counts(blocks);
  }
  swarm_state& s = it->second;
  s.charged += grow;
  if (new_member) s.availability.fit(s.all.size() + 1);
  change_set changes;
  std::vector<nv::peer_id> dropped;  // a re-joiner's old links, which it must hear are gone
  std::vector<nv::peer_id> distrusted;  // and whom it reported: that outlives a re-join
  std::vector<unlinked> unlinked_before;  // and its links removed lately, as do the old ones
  if (auto existing = s.by_id.find(who.id); existing != s.by_id.end()) {
    for (const auto& l : s.slots[existing->second].links) dropped.push_back(s.slots[l.slot].info.id);
    distrusted = std::move(s.slots[existing->second].distrusted);
    unlinked_before = std::move(s.slots[existing->second].recently_unlinked);
    remove_member(s, existing->second, changes);  // a re-join replaces the old bitfield
  } else {
    peer_swarms_[who.id].push_back(s.key);
  }
  const std::uint32_t slot = add_member(s, who, std::move(have));
  s.slots[slot].distrusted = std::move(distrusted);
  s.slots[slot].recently_unlinked = std::move(unlinked_before);
  for (auto id : dropped) remember_unlinked(s.slots[slot], id);
  changes.by_slot[slot].remove = std::move(dropped);  // applied before any add, per the spec
  out.push_back({who.conn, nv::joined{s.key, blocks, static_cast<std::uint32_t>(s.all.size() - 1)}});
  changes.by_slot.try_emplace(slot);  // the joiner always hears about its neighbours
  plan(s, slot, changes);
  flush(s, changes, out);
  return join_outcome::joined;
}

void mesh::on_have(const member_info& who, nv::have&& h, std::vector<mesh_outgoing>& out) {
  std::uint32_t slot;
  swarm_state* s = find_member(h.swarm, who.id, slot);
  if (!s) return refuse(out, who.conn, nv::error{nv::error_code::not_joined, "not a member of that swarm", "have", h.swarm});
  for (auto b : h.blocks)
    if (b >= s->blocks)
      return refuse(out, who.conn, nv::error{nv::error_code::block_out_of_range,
                                                "block " + std::to_string(b) + " is out of range (the swarm has " +
                                                    std::to_string(s->blocks) + " blocks)",
                                                "have", h.swarm});
  member& m = s->slots[slot];
  const bool was_holder = !m.have.empty();
  bool changed = false;
  for (auto b : h.blocks)
    if (m.have.set(b)) {
      s->availability.increment(b);
      changed = true;
    }
  if (!changed) return;
  if (!was_holder) set_insert(*s, holder_set, slot);
  if (m.have.complete()) ++s->seeds;
  // Lazily: one re-plan later however many have messages arrive meanwhile.
  if (!m.dirty) {
    m.dirty = true;
    s->dirty.push_back(slot);
  }
}

void mesh::on_leave(const member_info& who, const nv::leave& l, mesh_time_ms now, std::vector<mesh_outgoing>& out) {
  now_ = now;
  std::uint32_t slot;
  swarm_state* s = find_member(l.swarm, who.id, slot);
  if (!s) return refuse(out, who.conn, nv::error{nv::error_code::not_joined, "not a member of that swarm", "leave", l.swarm});
  change_set changes;
  remove_member(*s, slot, changes);
  flush(*s, changes, out);
  give_back_unused(*s);
  forget_swarm_of(who.id, l.swarm);
  drop_if_empty(l.swarm);
}

void mesh::on_signal(const member_info& who, nv::signal&& sig, mesh_time_ms now, std::vector<mesh_outgoing>& out) {
  std::uint32_t slot;
  swarm_state* s = find_member(sig.swarm, who.id, slot);
  if (!s) {
    ++counters_.signal_failures_not_joined;
    return refuse(out, who.conn, nv::error{nv::error_code::not_joined, "not a member of that swarm", "signal", sig.swarm});
  }
  auto target = s->by_id.find(sig.to);
  if (target == s->by_id.end()) {
    ++counters_.signal_failures_peer_not_found;
    return refuse(out, who.conn, nv::error{nv::error_code::peer_not_found,
                                              "peer " + nv::format_peer_id(sig.to) + " is not in that swarm", "signal", sig.swarm});
  }
  // Only neighbours have anything to negotiate: a member may not use the relay to reach (or
  // flood) any other member of its swarm. Either side's record of a link removed lately will do:
  // a member that left and joined again starts with none, while its former neighbours remember.
  const member& sender = s->slots[slot];
  const member& receiver = s->slots[target->second];
  if (!linked(*s, slot, target->second) && !unlinked_lately(sender, sig.to, now) &&
      !unlinked_lately(receiver, who.id, now)) {
    ++counters_.signal_failures_not_linked;
    return refuse(out, who.conn, nv::error{nv::error_code::not_linked,
                                              "peer " + nv::format_peer_id(sig.to) + " is not your neighbour in that swarm",
                                              "signal", sig.swarm});
  }
  ++counters_.signals_relayed[signal_kind_index(sig.kind)];
  out.push_back({receiver.info.conn, nv::signal_relay{s->key, who.id, std::move(sig.data)}});
}

void mesh::on_report(const member_info& who, const nv::report& r, mesh_time_ms now, std::vector<mesh_outgoing>& out) {
  now_ = now;
  std::uint32_t slot;
  swarm_state* s = find_member(r.swarm, who.id, slot);
  if (!s) return refuse(out, who.conn, nv::error{nv::error_code::not_joined, "not a member of that swarm", "report", r.swarm});
  // Saturating: a counter that wrapped would freeze the Prometheus one for good.
  auto add = [](std::uint64_t& total, std::uint64_t v) { total = total > UINT64_MAX - v ? UINT64_MAX : total + v; };
  add(s->http_bytes, r.http_bytes);
  add(s->p2p_bytes, r.p2p_bytes);
  add(s->uploaded_bytes, r.uploaded_bytes);
  add(counters_.http_bytes, r.http_bytes);
  add(counters_.p2p_bytes, r.p2p_bytes);
  add(counters_.uploaded_bytes, r.uploaded_bytes);

  // Corrupt blocks: unlink the pair for good; the reporter is refilled with someone else.
  if (r.bad_peers.empty()) return;
  change_set changes;
  bool unlinked = false;
  for (auto bad : r.bad_peers) {
    auto it = s->by_id.find(bad);
    if (it == s->by_id.end() || it->second == slot) continue;  // a stranger, or itself
    ++counters_.bad_peer_reports;
    auto& distrusted = s->slots[slot].distrusted;
    if (std::find(distrusted.begin(), distrusted.end(), bad) == distrusted.end()) {
      if (distrusted.size() >= max_distrusted) distrusted.erase(distrusted.begin());
      distrusted.push_back(bad);
    }
    if (linked(*s, slot, it->second)) {
      disconnect(*s, slot, it->second, changes);
      unlinked = true;
      // The accused may be honest (the reporter may lie): it gets its slot filled again.
      member& accused = s->slots[it->second];
      if (!accused.dirty) {
        accused.dirty = true;
        s->dirty.push_back(it->second);
      }
    }
  }
  // Only a lost link is worth a re-plan: reports naming peers it is not linked to (repeated,
  // or strangers) cost no planning work, however often a client sends them.
  if (!unlinked) return;
  plan(*s, slot, changes);
  flush(*s, changes, out);
}

void mesh::on_peer_gone(nv::peer_id id, mesh_time_ms now, std::vector<mesh_outgoing>& out) {
  now_ = now;
  auto it = peer_swarms_.find(id);
  if (it == peer_swarms_.end()) return;
  const auto keys = std::move(it->second);
  peer_swarms_.erase(it);
  for (const auto& key : keys) {
    std::uint32_t slot;
    swarm_state* s = find_member(key, id, slot);
    if (!s) continue;
    change_set changes;
    remove_member(*s, slot, changes);
    flush(*s, changes, out);
    give_back_unused(*s);
    drop_if_empty(key);
  }
}

void mesh::replan(mesh_time_ms now, std::vector<mesh_outgoing>& out) {
  now_ = now;
  std::size_t budget = config_.replan_per_call;
  // Resume at the swarm where the budget ran out last time, so that a large swarm with many
  // dirty members can't starve the ones after it.
  auto start = resume_.empty() ? swarms_.begin() : swarms_.find(resume_);
  if (start == swarms_.end()) start = swarms_.begin();
  resume_.clear();
  for (std::size_t visited = 0, total = swarms_.size(); visited < total; ++visited) {
    if (start == swarms_.end()) start = swarms_.begin();
    auto& [key, s] = *start++;
    if (s.dirty.empty()) continue;
    change_set changes;
    std::size_t i = 0;
    for (; i < s.dirty.size() && budget > 0; ++i) {
      member& m = s.slots[s.dirty[i]];
      if (!m.alive || !m.dirty) continue;
      m.dirty = false;
      --budget;
      plan(s, s.dirty[i], changes);
    }
    s.dirty.erase(s.dirty.begin(), s.dirty.begin() + static_cast<std::ptrdiff_t>(i));
    flush(s, changes, out);
    if (budget == 0) {
      resume_ = s.dirty.empty() && start != swarms_.end() ? start->first : key;
      break;
    }
  }
}

void mesh::forget_swarm_of(nv::peer_id id, const std::string& key) {
  auto it = peer_swarms_.find(id);
  if (it == peer_swarms_.end()) return;
  auto& keys = it->second;
  keys.erase(std::remove(keys.begin(), keys.end(), key), keys.end());
  if (keys.empty()) peer_swarms_.erase(it);
}

void mesh::give_back_unused(swarm_state& s) {
  const std::size_t needed = block_map_bytes(s);
  if (s.charged <= needed) return;
  budget_->give_back(budget_item::block_map_bytes, s.charged - needed);
  s.charged = needed;
}

void mesh::drop_if_empty(const std::string& key) {
  auto it = swarms_.find(key);
  if (it == swarms_.end() || !it->second.all.empty()) return;
  budget_->give_back(budget_item::block_map_bytes, it->second.charged);
  budget_->give_back(budget_item::native_swarms, 1);
  swarms_.erase(it);
}

// ------------------------------------------------------------------ reporting

mesh_totals mesh::totals() const {
  mesh_totals t;
  t.swarms = swarms_.size();
  for (const auto& [key, s] : swarms_) {
    t.seeds += s.seeds;
    t.leechers += s.all.size() - s.seeds;
    for (auto slot : s.all) t.links += s.slots[slot].links.size();
    t.block_map_bytes += s.charged;
  }
  t.links /= 2;
  return t;
}

std::vector<mesh_swarm_summary> mesh::top_swarms(std::size_t n) const {
  std::vector<mesh_swarm_summary> all;
  for (const auto& [key, s] : swarms_)
    all.push_back({key, static_cast<std::uint32_t>(s.all.size()), s.seeds, s.blocks, s.http_bytes, s.p2p_bytes});
  n = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [](const auto& a, const auto& b) { return a.peers > b.peers; });
  all.resize(n);
  return all;
}

std::vector<std::pair<nv::peer_id, bool>> mesh::neighbors_of(const std::string& swarm, nv::peer_id id) const {
  std::vector<std::pair<nv::peer_id, bool>> out;
  auto it = swarms_.find(swarm);
  if (it == swarms_.end()) return out;
  auto m = it->second.by_id.find(id);
  if (m == it->second.by_id.end()) return out;
  for (const auto& l : it->second.slots[m->second].links)
    out.emplace_back(it->second.slots[l.slot].info.id, l.initiator);
  return out;
}

std::vector<std::uint32_t> mesh::availability(const std::string& swarm) const {
  auto it = swarms_.find(swarm);
  return it == swarms_.end() ? std::vector<std::uint32_t>{} : it->second.availability.to_vector();
}

std::string mesh::check_invariants() const {
  std::size_t memberships = 0;
  for (const auto& [id, keys] : peer_swarms_) {
    if (keys.empty()) return "empty peer entry kept";
    for (const auto& key : keys) {
      auto it = swarms_.find(key);
      if (it == swarms_.end() || !it->second.by_id.count(id)) return "peer index names a missing membership";
    }
    memberships += keys.size();
  }
  std::size_t members = 0;
  for (const auto& [key, s] : swarms_) {
    if (s.all.empty()) return "empty swarm kept";
    if (s.by_id.size() != s.all.size()) return "id index size differs from member count";
    members += s.all.size();
    std::vector<std::uint32_t> avail(s.blocks, 0);
    std::uint32_t seeds = 0;
    std::size_t holders = 0;
    for (std::size_t pos = 0; pos < s.all.size(); ++pos) {
      const std::uint32_t slot = s.all[pos];
      const member& m = s.slots[slot];
      if (!m.alive) return "dead member listed";
      if (m.pos[all_set] != pos) return "member position out of step";
      auto id = s.by_id.find(m.info.id);
      if (id == s.by_id.end() || id->second != slot) return "id index out of step";
      if (m.have.size() != s.blocks) return "bitfield size differs from the swarm's";
      m.have.for_each_set([&](std::uint32_t b) { ++avail[b]; });
      if (m.have.complete()) ++seeds;
      if (!m.have.empty()) {
        ++holders;
        if (m.pos[holder_set] >= s.holders.size() || s.holders[m.pos[holder_set]] != slot) return "holder index out of step";
      }
      if (m.links.size() > m.info.max_neighbors) return "degree over max_neighbors";
      for (const auto& l : m.links) {
        if (l.slot == slot) return "self link";
        const member& q = s.slots[l.slot];
        if (!q.alive) return "link to a dead member";
        if (distrust(m, q)) return "link between a member and a peer it reported";
        int back = 0;
        for (const auto& ql : q.links)
          if (ql.slot == slot) {
            ++back;
            if (ql.initiator == l.initiator) return "a link needs exactly one initiator";
          }
        if (back != 1) return "asymmetric or duplicate link";
      }
      if (m.recently_unlinked.size() > max_unlinked) return "too many links remembered as removed";
      if (!std::is_sorted(m.recently_unlinked.begin(), m.recently_unlinked.end(),
                          [](const unlinked& a, const unlinked& b) { return a.until < b.until; }))
        return "links removed lately out of order";
      for (auto k : {site_set, subnet_set, asn_set, country_set}) {
        const auto bk = bucket_key(k, m.info.where);
        if (bk == 0 && k != subnet_set) continue;
        auto b = s.buckets[k].find(bk);
        if (b == s.buckets[k].end() || m.pos[k] >= b->second.size() || b->second[m.pos[k]] != slot)
          return "locality bucket out of step";
      }
    }
    if (holders != s.holders.size()) return "holder count out of step";
    if (seeds != s.seeds) return "seed count out of step";
    if (avail != s.availability.to_vector()) return "availability counts out of step";
    if (s.charged != block_map_bytes(s)) return "block-map bytes taken from the budget out of step";
  }
  if (members != memberships) return "peer index differs from member count";
  return {};
}

}  // namespace swarmcoord::swarm
