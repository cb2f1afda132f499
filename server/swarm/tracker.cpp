#include "server/swarm/tracker.hpp"

#include <algorithm>
#include <optional>

namespace swarmcoord::swarm {
namespace {

// Calls visit(position) for distinct random positions in [0, n) until it returns true or the
// positions run out. Small ranges are walked as a lazy Fisher-Yates shuffle (exhaustive);
// large ones are probed at random a bounded number of times, so the cost never grows with n.
template <class Visit>
void visit_random(std::size_t n, std::size_t want, std::mt19937_64& rng, Visit&& visit) {
  if (n == 0 || want == 0) return;
  const std::size_t exhaustive_limit = 8 * want + 32;
  if (n <= exhaustive_limit) {
    std::vector<std::uint32_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<std::uint32_t>(i);
    for (std::size_t i = 0; i < n; ++i) {
      std::uniform_int_distribution<std::size_t> pick(i, n - 1);
      std::swap(order[i], order[pick(rng)]);
      if (visit(order[i])) return;
    }
    return;
  }
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  for (std::size_t attempt = 0; attempt < exhaustive_limit; ++attempt)
    if (visit(pick(rng))) return;
}

}  // namespace

tracker::tracker(tracker_config config, std::uint64_t seed, std::shared_ptr<swarm_budget> budget)
    : config_(config), rng_(seed), budget_(budget ? std::move(budget) : std::make_shared<swarm_budget>()) {}

tracker::~tracker() {
  if (budget_) budget_->give_back(budget_item::webtorrent_swarms, swarms_.size());
}

tracker::swarm_map::iterator tracker::erase_swarm(swarm_map::iterator it) {
  budget_->give_back(budget_item::webtorrent_swarms, 1);
  return swarms_.erase(it);
}

wt::announce_response tracker::response_for(const binary_id& info_hash, const swarm* s) const {
  wt::announce_response r;
  r.info_hash = info_hash;
  r.interval_s = config_.interval_s;
  if (s) {
    r.complete = s->seeders;
    r.incomplete = static_cast<std::uint32_t>(s->peers.size()) - s->seeders;
  }
  return r;
}

void tracker::on_announce(connection_id conn, const ip_address& from, wt::announce&& a,
                          time_ms now, std::vector<outgoing>& out, std::uint32_t ticket) {
  auto sit = swarms_.find(a.info_hash);
  if (a.event == wt::announce_event::stopped) {
    if (sit != swarms_.end()) {
      swarm& s = sit->second;
      // Only the socket the peer announced on may stop it: peer_ids travel in every offer,
      // so anyone in the swarm knows them.
      if (auto pit = s.index.find(a.peer_id); pit != s.index.end() && s.peers[pit->second].conn == conn) {
        forget_membership(conn, a.info_hash, a.peer_id);
        remove_peer(s, a.info_hash, pit->second);
      }
      if (s.peers.empty()) {
        erase_swarm(sit);
        sit = swarms_.end();
      }
    }
    out.push_back({conn, response_for(a.info_hash, sit == swarms_.end() ? nullptr : &sit->second)});
    counters_.offers_unrelayed += a.offers.size();
    return;
  }

  swarm* s = sit == swarms_.end() ? nullptr : &sit->second;
  std::optional<std::uint32_t> known;
  if (s)
    if (auto pit = s->index.find(a.peer_id); pit != s->index.end()) known = pit->second;
  std::uint32_t self = 0;
  if (known) {
    self = *known;
    peer& p = s->peers[self];
    if (p.conn != conn) {
      // Anyone in the swarm knows the peer_id (offers carry it): while its owner is alive,
      // another socket may not take over its offers, answers or stop.
      if (!owner_silent(p, now)) return refuse_peer_id_in_use(conn, a, ticket, out);
      // Its client reconnected on another socket: the peer follows it, the silent old socket
      // no longer owns it.
      released_.push_back({p.conn, a.info_hash, a.peer_id, p.ticket});
      forget_membership(p.conn, a.info_hash, a.peer_id);
      p.conn = conn;
      connections_[conn].push_back({a.info_hash, a.peer_id});
      // It may have reconnected from another network: locality follows the new address.
      set_subnet(*s, self, subnet_key(from));
    }
    s->peers[self].last_seen = now;
    s->peers[self].ticket = ticket;
  } else {
    if (!s) {
      if (!budget_->take(budget_item::webtorrent_swarms, 1)) {
        // Existing swarms go on; this pair was never added, and its connection must hear so.
        ++counters_.limited_swarms;
        ++counters_.errors[static_cast<std::size_t>(wt::error_reason::server_full)];
        counters_.offers_unrelayed += a.offers.size() + a.offers_skipped;
        out.push_back({conn, wt::request_error{wt::error_reason::server_full,
                                               "tracker is full: it holds as many torrents as it may (tracker.max_swarms)",
                                               a.info_hash, "announce"}});
        released_.push_back({conn, a.info_hash, a.peer_id, ticket});
        return;
      }
      s = &swarms_[a.info_hash];
    }
    add_peer(*s, a.info_hash, a.peer_id, conn, from, now, ticket);
    self = static_cast<std::uint32_t>(s->peers.size() - 1);
  }

  peer& p = s->peers[self];
  if (a.event == wt::announce_event::completed) {
    if (!p.seeder) ++s->downloaded;
    set_seeder(*s, p, true);
  } else if (a.left) {
    set_seeder(*s, p, *a.left == 0);
  }

  out.push_back({conn, response_for(a.info_hash, s)});
  relay_offers(*s, a.info_hash, self, a, now, out);
}

void tracker::refuse_peer_id_in_use(connection_id conn, const wt::announce& a, std::uint32_t ticket,
                                    std::vector<outgoing>& out) {
  ++counters_.errors[static_cast<std::size_t>(wt::error_reason::peer_id_in_use)];
  counters_.offers_unrelayed += a.offers.size() + a.offers_skipped;
  // The shape with info_hash: the client warns, keeps its socket and re-announces later.
  out.push_back({conn, wt::request_error{wt::error_reason::peer_id_in_use,
                                         "peer_id is in use by another connection", a.info_hash, "announce"}});
  // The announcer's home counted the pair when it sent the announce: it never held it.
  released_.push_back({conn, a.info_hash, a.peer_id, ticket});
}

void tracker::relay_offers(swarm& s, const binary_id& info_hash, std::uint32_t self,
                           wt::announce& a, time_ms now, std::vector<outgoing>& out) {
  counters_.offers_unrelayed += a.offers_skipped;
  if (a.offers.empty()) return;
  peer& offerer = s.peers[self];
  std::size_t budget = max_pending_per_peer() > offerer.pending_offers
                           ? max_pending_per_peer() - offerer.pending_offers : 0;
  std::size_t k = std::min({a.offers.size(), config_.max_offers, budget});
  std::vector<std::uint32_t> chosen;
  choose_recipients(s, self, k, chosen);
  counters_.offers_unrelayed += a.offers.size() - chosen.size();

  expire_offers(s, now);
  const time_ms expires = now + config_.offer_ttl_ms;
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    const peer& to = s.peers[chosen[i]];
    auto& o = a.offers[i];
    offer_key key{offerer.peer_id, o.offer_id};
    // An offer_id still pending is not relayed again: re-sending one would cost nothing
    // against the per-peer budget yet grow the expiry queue with every message.
    auto [it, inserted] = s.offers.try_emplace(key, pending_offer{to.peer_id, to.conn, expires});
    if (!inserted) {
      ++counters_.offers_unrelayed;
      continue;
    }
    ++offerer.pending_offers;
    s.offer_expiry.emplace_back(expires, key);
    out.push_back({to.conn, wt::offer_relay{info_hash, offerer.peer_id, o.offer_id, std::move(o.sdp)}});
    ++counters_.offers_relayed;
  }
}

void tracker::choose_recipients(const swarm& s, std::uint32_t self, std::size_t k,
                                std::vector<std::uint32_t>& chosen) {
  const peer& me = s.peers[self];
  k = std::min(k, s.peers.size() - 1);
  if (k == 0) return;
  chosen.reserve(k);
  auto take = [&](std::uint32_t i) {
    const peer& q = s.peers[i];
    // Nobody is offered to itself or to another peer_id of its own socket.
    if (i != self && q.conn != me.conn && std::find(chosen.begin(), chosen.end(), i) == chosen.end())
      chosen.push_back(i);
    return chosen.size() >= k;
  };
  // Locality first: peers of the announcer's own /24 (or IPv6 /48), then anyone.
  const auto& near = s.by_subnet.at(me.subnet);
  visit_random(near.size(), k, rng_, [&](std::size_t pos) { return take(near[pos]); });
  if (chosen.size() < k)
    visit_random(s.peers.size(), k - chosen.size(), rng_,
                 [&](std::size_t pos) { return take(static_cast<std::uint32_t>(pos)); });
}

void tracker::on_answer(connection_id conn, wt::answer&& a, time_ms now, std::vector<outgoing>& out) {
  auto sit = swarms_.find(a.info_hash);
  if (sit == swarms_.end()) {
    ++counters_.answers_dropped_unknown_offer;
    return;
  }
  swarm& s = sit->second;
  auto oit = s.offers.find(offer_key{a.to_peer_id, a.offer_id});
  // The answer must come from the peer the offer went to, on the socket it went to, in time.
  if (oit == s.offers.end() || oit->second.recipient != a.peer_id ||
      oit->second.recipient_conn != conn || oit->second.expires <= now) {
    ++counters_.answers_dropped_unknown_offer;
    return;
  }
  s.offers.erase(oit);
  auto offerer = s.index.find(a.to_peer_id);
  if (offerer == s.index.end()) {
    ++counters_.answers_dropped_offerer_gone;
    return;
  }
  peer& o = s.peers[offerer->second];
  if (o.pending_offers > 0) --o.pending_offers;
  // An answer is a sign of life of the answerer, from its owner only.
  if (auto answerer = s.index.find(a.peer_id); answerer != s.index.end() && s.peers[answerer->second].conn == conn)
    s.peers[answerer->second].last_seen = now;
  out.push_back({o.conn, wt::answer_relay{a.info_hash, a.peer_id, a.offer_id, std::move(a.sdp)}});
  ++counters_.answers_relayed;
}

void tracker::on_connection_closed(connection_id conn) {
  auto cit = connections_.find(conn);
  if (cit == connections_.end()) return;
  auto owned = std::move(cit->second);
  connections_.erase(cit);
  for (const auto& m : owned) {
    auto sit = swarms_.find(m.info_hash);
    if (sit == swarms_.end()) continue;
    auto pit = sit->second.index.find(m.peer_id);
    if (pit == sit->second.index.end() || sit->second.peers[pit->second].conn != conn) continue;
    remove_peer(sit->second, m.info_hash, pit->second);
    if (sit->second.peers.empty()) erase_swarm(sit);
  }
}

void tracker::expire(time_ms now) {
  for (auto sit = swarms_.begin(); sit != swarms_.end();) {
    swarm& s = sit->second;
    for (std::size_t i = s.peers.size(); i-- > 0;) {
      if (now - s.peers[i].last_seen < config_.peer_ttl_ms) continue;
      released_.push_back({s.peers[i].conn, sit->first, s.peers[i].peer_id, s.peers[i].ticket});
      forget_membership(s.peers[i].conn, sit->first, s.peers[i].peer_id);
      remove_peer(s, sit->first, static_cast<std::uint32_t>(i));
      ++counters_.peers_expired;
    }
    expire_offers(s, now);
    if (s.peers.empty()) sit = erase_swarm(sit);
    else ++sit;
  }
}

void tracker::take_released(std::vector<released_peer>& out) {
  out.insert(out.end(), released_.begin(), released_.end());
  released_.clear();
}

void tracker::expire_offers(swarm& s, time_ms now) {
  while (!s.offer_expiry.empty() && s.offer_expiry.front().first <= now) {
    const auto& [expires, key] = s.offer_expiry.front();
    auto it = s.offers.find(key);
    // A re-sent offer_id leaves an older queue entry behind; only the live one counts.
    if (it != s.offers.end() && it->second.expires == expires) {
      s.offers.erase(it);
      if (auto p = s.index.find(key.offerer); p != s.index.end() && s.peers[p->second].pending_offers > 0)
        --s.peers[p->second].pending_offers;
    }
    s.offer_expiry.pop_front();
  }
}

void tracker::add_peer(swarm& s, const binary_id& info_hash, const binary_id& peer_id,
                       connection_id conn, const ip_address& from, time_ms now, std::uint32_t ticket) {
  peer p;
  p.peer_id = peer_id;
  p.ticket = ticket;
  p.conn = conn;
  p.subnet = subnet_key(from);
  p.last_seen = now;
  auto index = static_cast<std::uint32_t>(s.peers.size());
  auto& bucket = s.by_subnet[p.subnet];
  p.subnet_pos = static_cast<std::uint32_t>(bucket.size());
  bucket.push_back(index);
  s.peers.push_back(p);
  s.index.emplace(peer_id, index);
  connections_[conn].push_back({info_hash, peer_id});
}

void tracker::leave_subnet(swarm& s, std::uint32_t index) {
  const peer& p = s.peers[index];
  auto bit = s.by_subnet.find(p.subnet);
  auto& bucket = bit->second;
  std::uint32_t moved = bucket.back();
  bucket[p.subnet_pos] = moved;
  s.peers[moved].subnet_pos = p.subnet_pos;
  bucket.pop_back();
  if (bucket.empty()) s.by_subnet.erase(bit);
}

void tracker::set_subnet(swarm& s, std::uint32_t index, std::uint64_t subnet) {
  if (s.peers[index].subnet == subnet) return;
  leave_subnet(s, index);
  auto& bucket = s.by_subnet[subnet];
  peer& p = s.peers[index];
  p.subnet = subnet;
  p.subnet_pos = static_cast<std::uint32_t>(bucket.size());
  bucket.push_back(index);
}

void tracker::remove_peer(swarm& s, const binary_id& info_hash, std::uint32_t index) {
  // Caller keeps connections_ in step; this keeps the swarm's own indexes in step.
  peer& p = s.peers[index];
  if (p.seeder) --s.seeders;
  leave_subnet(s, index);

  s.index.erase(p.peer_id);
  auto last = static_cast<std::uint32_t>(s.peers.size() - 1);
  if (index != last) {
    s.peers[index] = s.peers[last];
    peer& q = s.peers[index];
    s.index[q.peer_id] = index;
    s.by_subnet[q.subnet][q.subnet_pos] = index;
  }
  s.peers.pop_back();
}

void tracker::set_seeder(swarm& s, peer& p, bool seeder) {
  if (p.seeder == seeder) return;
  p.seeder = seeder;
  if (seeder) ++s.seeders;
  else --s.seeders;
}

void tracker::forget_membership(connection_id conn, const binary_id& info_hash,
                                const binary_id& peer_id) {
  auto cit = connections_.find(conn);
  if (cit == connections_.end()) return;
  auto& owned = cit->second;
  auto it = std::find_if(owned.begin(), owned.end(), [&](const membership& m) {
    return m.info_hash == info_hash && m.peer_id == peer_id;
  });
  if (it != owned.end()) {
    *it = owned.back();
    owned.pop_back();
  }
  if (owned.empty()) connections_.erase(cit);
}

void tracker::scrape(const std::vector<binary_id>& info_hashes, std::vector<wt::scrape_file>& out) const {
  for (const auto& ih : info_hashes) {
    wt::scrape_file f{ih};
    if (auto it = swarms_.find(ih); it != swarms_.end()) {
      f.complete = it->second.seeders;
      f.incomplete = static_cast<std::uint32_t>(it->second.peers.size()) - it->second.seeders;
      f.downloaded = it->second.downloaded;
    }
    out.push_back(f);
  }
}

void tracker::scrape_all(std::vector<wt::scrape_file>& out) const {
  for (const auto& [ih, s] : swarms_) {
    if (out.size() >= config_.max_scrape_all) break;
    out.push_back({ih, s.seeders, static_cast<std::uint32_t>(s.peers.size()) - s.seeders, s.downloaded});
  }
}

tracker_totals tracker::totals() const {
  tracker_totals t;
  t.swarms = swarms_.size();
  for (const auto& [ih, s] : swarms_) {
    t.seeders += s.seeders;
    t.leechers += s.peers.size() - s.seeders;
    t.pending_offers += s.offers.size();
  }
  return t;
}

std::vector<swarm_summary> tracker::top_swarms(std::size_t n) const {
  std::vector<swarm_summary> all;
  all.reserve(swarms_.size());
  for (const auto& [ih, s] : swarms_)
    all.push_back({ih, s.seeders, static_cast<std::uint32_t>(s.peers.size()) - s.seeders});
  auto size = [](const swarm_summary& x) { return x.seeders + x.leechers; };
  n = std::min(n, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                    [&](const auto& x, const auto& y) { return size(x) > size(y); });
  all.resize(n);
  return all;
}

std::string tracker::check_invariants() const {
  std::size_t memberships = 0;
  for (const auto& [conn, owned] : connections_) {
    if (owned.empty()) return "empty connection entry";
    memberships += owned.size();
    for (const auto& m : owned) {
      auto sit = swarms_.find(m.info_hash);
      if (sit == swarms_.end()) return "membership names a missing swarm";
      auto pit = sit->second.index.find(m.peer_id);
      if (pit == sit->second.index.end()) return "membership names a missing peer";
      if (sit->second.peers[pit->second].conn != conn) return "membership on the wrong connection";
    }
  }
  std::size_t peers = 0;
  for (const auto& [ih, s] : swarms_) {
    if (s.peers.empty()) return "empty swarm kept";
    if (s.index.size() != s.peers.size()) return "index size differs from peer count";
    std::uint32_t seeders = 0;
    std::size_t bucketed = 0;
    for (const auto& [key, bucket] : s.by_subnet) {
      if (bucket.empty()) return "empty subnet bucket kept";
      bucketed += bucket.size();
      for (std::size_t pos = 0; pos < bucket.size(); ++pos) {
        if (bucket[pos] >= s.peers.size()) return "bucket index out of range";
        const peer& p = s.peers[bucket[pos]];
        if (p.subnet != key || p.subnet_pos != pos) return "bucket position out of step";
      }
    }
    if (bucketed != s.peers.size()) return "bucketed peers differ from peer count";
    for (std::size_t i = 0; i < s.peers.size(); ++i) {
      const peer& p = s.peers[i];
      auto it = s.index.find(p.peer_id);
      if (it == s.index.end() || it->second != i) return "index out of step";
      if (p.seeder) ++seeders;
      auto cit = connections_.find(p.conn);
      // `&ih = ih`: clang before 16 can't capture a structured binding (the fuzz build's clang 14).
      if (cit == connections_.end() ||
          std::none_of(cit->second.begin(), cit->second.end(), [&, &ih = ih](const membership& m) {
            return m.info_hash == ih && m.peer_id == p.peer_id;
          }))
        return "peer missing from its connection's memberships";
    }
    if (seeders != s.seeders) return "seeder count out of step";
    peers += s.peers.size();
  }
  if (peers != memberships) return "memberships differ from peer count";
  return {};
}

}  // namespace swarmcoord::swarm
