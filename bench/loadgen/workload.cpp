// loadgen: the WebTorrent and native workloads (described at the top of main.cpp): message
// templates, the request loop, and the handling of what the server sends.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>

#include "connection.hpp"

namespace loadgen {

namespace {

// An SDP of exactly `len` characters (once JSON-decoded), as JSON string content, with a
// 16-digit stamp slot; returns the offset of the slot within the returned text.
std::pair<std::string, std::size_t> make_sdp(unsigned len, std::string_view kind) {
  std::string head = "v=0\\r\\no=- ";
  const std::size_t slot = head.size();
  head += "0000000000000000 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\nt=0 0\\r\\na=group:BUNDLE 0\\r\\na=x-loadgen:";
  head += kind;
  head += "\\r\\na=ice-pwd:";
  // Decoded length so far: every "\\r\\n" (4 characters here) is 2 once decoded.
  auto decoded = [](const std::string& s) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.size(); ++i, ++n)
      if (s[i] == '\\') ++i;
    return n;
  };
  std::string tail = "\\r\\n";
  std::size_t have = decoded(head) + 2;
  std::string pad;
  for (std::size_t i = have; i < len; ++i) pad += alnum[i % 62];
  return {head + pad + tail, slot};
}

}  // namespace

driver::driver(global_state& gs, unsigned index, unsigned first_conn, unsigned conn_count)
    : g(gs),
      opt(gs.opt),
      rng(gs.opt.seed * 0x9E3779B97F4A7C15ull + index + 1),
      gamma(gs.opt.gamma_shape, gs.opt.gamma_scale),
      index_(index),
      first_conn_(first_conn),
      conn_count_(conn_count) {
  auto [sdp, stamp_at] = make_sdp(opt.sdp_bytes, "offer");
  for (int seeder = 0; seeder < 2; ++seeder) {
    auto& t = announce_tpl[static_cast<std::size_t>(seeder)];
    t.text = R"({"action":"announce","info_hash":")";
    t.info_hash = t.text.size();
    t.text += std::string(20, 'I') + R"(","peer_id":")";
    t.peer_id = t.text.size();
    t.text += std::string(20, 'P') + R"(","numwant":)" + std::to_string(opt.numwant) +
              R"(,"uploaded":0,"downloaded":0,"left":)" + (seeder ? "0" : "50") + R"(,"event":")" +
              (seeder ? "completed" : "started") + R"(","offers":[)";
    for (unsigned i = 0; i < opt.offers; ++i) {
      if (i) t.text += ',';
      t.text += R"({"offer":{"type":"offer","sdp":")";
      t.stamps.push_back(t.text.size() + stamp_at);
      t.text += sdp + R"("},"offer_id":")";
      t.offer_ids.push_back(t.text.size());
      t.text += std::string(20, 'O') + R"("})";
    }
    t.text += "]}";
  }
  auto [asdp, astamp] = make_sdp(opt.sdp_bytes, "answer");
  answer_tpl = R"({"action":"announce","info_hash":")";
  ans_info_hash = answer_tpl.size();
  answer_tpl += std::string(20, 'I') + R"(","peer_id":")";
  ans_peer_id = answer_tpl.size();
  answer_tpl += std::string(20, 'P') + R"(","to_peer_id":")";
  ans_to_peer_id = answer_tpl.size();
  answer_tpl += std::string(20, 'T') + R"(","offer_id":")";
  ans_offer_id = answer_tpl.size();
  answer_tpl += std::string(20, 'O') + R"(","answer":{"type":"answer","sdp":")";
  ans_stamp = answer_tpl.size() + astamp;
  answer_tpl += asdp + R"("}})";

  idle_tpl = R"({"action":"announce","info_hash":")";
  idle_info_hash = idle_tpl.size();
  idle_tpl += std::string(20, 'I') + R"(","peer_id":")";
  idle_peer_id = idle_tpl.size();
  idle_tpl += std::string(20, 'P') + R"(","numwant":0,"uploaded":0,"downloaded":0,"left":50,"event":"started"})";

  std::tie(native_offer_sdp, native_offer_stamp) = make_sdp(opt.sdp_bytes, "offer");
  std::tie(native_answer_sdp, native_answer_stamp) = make_sdp(opt.sdp_bytes, "answer");
  per_request_ = opt.protocol == proto::webtorrent ? 1.0 + 2.0 * opt.offers : 3.0;
}

// ---------------------------------------------------------------- the request loop
void connection::start_loop() {
  if (d_.paced()) d_.ready(this);
  else send_request();
}

// The next request, or into the pacer's ready list.
void connection::next() {
  if (!open_ || opt_.idle) return;
  if (d_.paced()) d_.ready(this);
  else send_request();
}

void connection::send_request() {
  if (opt_.protocol == proto::webtorrent) send_announce();
  else native_action();
}

// ---------------------------------------------------------------- WebTorrent
void connection::send_announce() {
  const bool seeder = d_.unit(d_.rng) < opt_.seeders;
  const auto& t = d_.announce_tpl[seeder ? 1 : 0];
  std::string& b = d_.scratch;
  b.assign(t.text);
  const auto& ih = g_.info_hashes[d_.swarm_index()];
  std::memcpy(b.data() + t.info_hash, ih.data(), 20);
  std::memcpy(b.data() + t.peer_id, peer_id_.data(), 20);
  const std::uint64_t now = now_ns();
  for (std::size_t i = 0; i < t.offer_ids.size(); ++i) {
    // offer_id: 4 characters of this connection, 16 hex digits of a sequence: unique per peer.
    char* at = b.data() + t.offer_ids[i];
    std::uint32_t p = offer_prefix_;
    for (int k = 0; k < 4; ++k, p /= 62) at[k] = alnum[p % 62];
    put_hex16(at + 4, ++offer_seq_);
    put_hex16(b.data() + t.stamps[i], now);
  }
  outstanding_ = true;
  outstanding_since_ = now;
  st().sent_announce.inc();
  send_frame(b);
}

void connection::send_idle_announce() {
  std::string& b = d_.scratch;
  b.assign(d_.idle_tpl);
  std::memcpy(b.data() + d_.idle_info_hash, g_.info_hashes[d_.swarm_index()].data(), 20);
  std::memcpy(b.data() + d_.idle_peer_id, peer_id_.data(), 20);
  mark_outstanding();
  st().sent_announce.inc();
  send_frame(b);
}

void connection::on_webtorrent(std::string_view m) {
  if (find(m, R"("offer":)") != std::string_view::npos) {
    st().r_offer.inc();
    auto ih = string_field(m, R"("info_hash":")", 20);
    auto from = string_field(m, R"("peer_id":")", 20);
    auto oid = string_field(m, R"("offer_id":")", 20);
    auto stamp = find_stamp(m);
    if (!ih || !from || !oid || !stamp) {
      st().parse_errors.inc();
      return;
    }
    // Answer at once, on this socket, as a browser would once its answer SDP is ready.
    std::string& b = d_.scratch;
    b.assign(d_.answer_tpl);
    std::memcpy(b.data() + d_.ans_info_hash, ih->data(), 20);
    std::memcpy(b.data() + d_.ans_peer_id, peer_id_.data(), 20);
    std::memcpy(b.data() + d_.ans_to_peer_id, from->data(), 20);
    std::memcpy(b.data() + d_.ans_offer_id, oid->data(), 20);
    put_hex16(b.data() + d_.ans_stamp, *stamp);
    st().sent_answer.inc();
    send_frame(b);
    return;
  }
  if (find(m, R"("answer":)") != std::string_view::npos) {
    st().r_answer.inc();
    auto stamp = find_stamp(m);
    if (!stamp) {
      st().parse_errors.inc();
      return;
    }
    const std::uint64_t now = now_ns();
    if (d_.measuring() && now >= *stamp) st().relay_lat.record(now - *stamp);
    return;
  }
  if (find(m, R"("failure reason")") != std::string_view::npos) {
    st().r_error.inc();
    if (error_lines_left.fetch_sub(1) > 0)
      std::fprintf(stderr, "loadgen: server error: %.*s\n", static_cast<int>(std::min<std::size_t>(m.size(), 300)),
                   m.data());
    if (outstanding_) {
      outstanding_ = false;
      next();
    }
    return;
  }
  if (find(m, R"("interval")") != std::string_view::npos || find(m, R"("complete")") != std::string_view::npos) {
    st().r_announce.inc();
    if (!outstanding_) return;  // a reply we already gave up on
    outstanding_ = false;
    const std::uint64_t now = now_ns();
    if (d_.measuring()) st().announce_lat.record(now - outstanding_since_);
    if (opt_.idle) {
      if (!idle_done_) {
        idle_done_ = true;
        st().idle_ready.inc();
      }
      return;
    }
    next();
    return;
  }
  st().r_other.inc();
}

// ---------------------------------------------------------------- native
void connection::native_join() {
  swarm_ = d_.swarm_index();
  std::string& b = d_.scratch;
  b.assign(R"({"type":"join","swarm":")");
  b += url();
  b += R"(","size":4194304,"block_size":65536)";
  if (seeder_native_) b += R"(,"have":"all")";
  b += '}';
  neighbors_.clear();
  joined_ = true;
  awaiting_neighbors_ = false;
  mark_outstanding();
  st().sent_announce.inc();
  send_frame(b);
}

void connection::native_leave() {
  std::string& b = d_.scratch;
  b.assign(R"({"type":"leave","swarm":")");
  b += url();
  b += R"("})";
  joined_ = false;
  neighbors_.clear();
  st().sent_other.inc();
  send_frame(b);
}

void connection::native_have() {
  std::string& b = d_.scratch;
  b.assign(R"({"type":"have","swarm":")");
  b += url();
  b += R"(","blocks":[)";
  const unsigned n = 1 + static_cast<unsigned>(d_.rng() % 4);
  for (unsigned i = 0; i < n; ++i) {
    if (i) b += ',';
    char num[24];
    auto [end, ec] = std::to_chars(num, num + sizeof num, d_.rng() % 64);
    b.append(num, static_cast<std::size_t>(end - num));  // GCC 12 warns (-Wstringop-overflow) on append(num, end)
  }
  b += "]}";
  st().sent_other.inc();
  send_frame(b);
}

void connection::native_offer(std::uint64_t to) {
  std::string& b = d_.scratch;
  b.assign(R"({"type":"signal","swarm":")");
  b += url();
  b += R"(","to":")";
  const std::size_t to_at = b.size();
  b.append(16, '0');
  b += R"(","data":{"type":"offer","sdp":")";
  const std::size_t sdp_at = b.size();
  b += d_.native_offer_sdp;
  b += R"("}})";
  put_hex16(b.data() + to_at, to);
  const std::uint64_t now = now_ns();
  put_hex16(b.data() + sdp_at + d_.native_offer_stamp, now);
  outstanding_ = true;
  outstanding_since_ = now;
  st().sent_other.inc();
  send_frame(b);
}

// One step of the native mix (see the top of main.cpp).
void connection::native_action() {
  if (!joined_) return native_join();
  const double r = d_.unit(d_.rng);
  if (r < 0.2 && !seeder_native_) {
    native_have();  // no reply expected: the next action follows at once
    if (!neighbors_.empty()) return native_offer(neighbors_[d_.rng() % neighbors_.size()]);
    native_leave();
    return native_join();
  }
  if (r < 0.8 && !neighbors_.empty()) return native_offer(neighbors_[d_.rng() % neighbors_.size()]);
  native_leave();
  native_join();
}

// Whether a message names the swarm this connection is in now (`"swarm":"URL"` follows the type).
bool connection::current_swarm(std::string_view m) const {
  if (!joined_) return false;
  auto sw = find(m, R"("swarm":")");
  if (sw == std::string_view::npos) return false;
  const std::size_t at = sw + 9;
  return at + url().size() < m.size() && m.substr(at, url().size()) == url() && m[at + url().size()] == '"';
}

void connection::on_native(std::string_view m) {
  constexpr std::string_view type_key = R"({"type":")";
  if (!m.starts_with(type_key)) {
    st().r_other.inc();
    st().parse_errors.inc();
    return;
  }
  std::string_view rest = m.substr(type_key.size());
  if (rest.starts_with("signal\"")) {
    if (!current_swarm(m)) {
      st().r_other.inc();  // for a swarm we left meanwhile
      return;
    }
    auto from = string_field(m, R"("from":")", 16);
    auto dat = find(m, R"("data":)");
    if (!from || dat == std::string_view::npos) {
      st().parse_errors.inc();
      return;
    }
    std::string_view data = m.substr(dat);
    auto stamp = find_stamp(data);
    if (find(data, R"("type":"offer")") != std::string_view::npos) {
      st().r_offer.inc();
      if (!stamp) {
        st().parse_errors.inc();
        return;
      }
      // Answer to the sender, in this swarm.
      std::string& b = d_.scratch;
      b.assign(R"({"type":"signal","swarm":")");
      b += url();
      b += R"(","to":")";
      b.append(*from);
      b += R"(","data":{"type":"answer","sdp":")";
      const std::size_t sdp_at = b.size();
      b += d_.native_answer_sdp;
      b += R"("}})";
      put_hex16(b.data() + sdp_at + d_.native_answer_stamp, *stamp);
      st().sent_answer.inc();
      send_frame(b);
    } else {
      st().r_answer.inc();
      if (stamp) {
        const std::uint64_t now = now_ns();
        if (d_.measuring() && now >= *stamp) st().relay_lat.record(now - *stamp);
      }
      if (outstanding_) {
        outstanding_ = false;
        next();
      }
    }
    return;
  }
  if (rest.starts_with("neighbors\"")) {
    st().r_other.inc();
    if (!current_swarm(m)) return;
    // The neighbors that follows joined completes the join.
    const bool completes_join = awaiting_neighbors_;
    awaiting_neighbors_ = false;
    // add: [{"peer_id":"..."...}], remove: ["...", ...]
    auto add = find(m, R"("add":[)");
    auto rem = find(m, R"("remove":[)");
    if (add == std::string_view::npos || rem == std::string_view::npos) {
      st().parse_errors.inc();
      return;
    }
    for (std::size_t at = add; (at = find(m, R"("peer_id":")", at)) != std::string_view::npos && at < rem;) {
      at += 11;
      if (auto id = get_hex16(m.substr(at)))
        if (std::find(neighbors_.begin(), neighbors_.end(), *id) == neighbors_.end() && neighbors_.size() < 64)
          neighbors_.push_back(*id);
    }
    for (std::size_t at = rem + 10; at < m.size() && m[at] == '"';) {
      if (auto id = get_hex16(m.substr(at + 1))) std::erase(neighbors_, *id);
      at += 18;
      if (at < m.size() && m[at] == ',') ++at;
    }
    if (completes_join && outstanding_) {
      outstanding_ = false;
      next();
    }
    return;
  }
  if (rest.starts_with("joined\"")) {
    st().r_announce.inc();
    if (!outstanding_ || !current_swarm(m)) return;
    if (d_.measuring()) st().announce_lat.record(now_ns() - outstanding_since_);
    if (opt_.idle) {
      outstanding_ = false;
      if (!idle_done_) {
        idle_done_ = true;
        st().idle_ready.inc();
      }
      return;
    }
    awaiting_neighbors_ = true;  // still outstanding: the next step needs the neighbours
    return;
  }
  if (rest.starts_with("welcome\"")) {
    st().r_other.inc();
    outstanding_ = false;
    if (!opt_.idle && !g_.started.load(std::memory_order_relaxed)) return d_.park(this);
    // The first join goes out at once; pacing applies from the next request on.
    native_join();
    return;
  }
  if (rest.starts_with("error\"")) {
    st().r_error.inc();
    if (error_lines_left.fetch_sub(1) > 0)
      std::fprintf(stderr, "loadgen: server error: %.*s\n", static_cast<int>(std::min<std::size_t>(m.size(), 300)),
                   m.data());
    // A refused join leaves us outside any swarm.
    if (find(m, R"("ref":"join")") != std::string_view::npos) joined_ = false;
    if (outstanding_) {
      outstanding_ = false;
      next();
    }
    return;
  }
  st().r_other.inc();
}

}  // namespace loadgen
