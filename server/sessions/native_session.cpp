#include "server/sessions/native_session.hpp"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "server/sessions/ice.hpp"

namespace swarmcoord::sessions {
namespace {
using protocol::websocket::close_code;
}  // namespace

native_session::native_session(transport& t, router& r, metrics::native_session_counters& counters,
                               const config::config& cfg, connection_id id, swarm::ip_address client,
                               swarm::location where, peer_id_source new_peer_id, admitted admission)
    : transport_(t), router_(r), counters_(counters), cfg_(cfg), id_(id), client_(client), where_(where),
      new_peer_id_(std::move(new_peer_id)), admitted_(std::move(admission)) {}

void native_session::on_message(std::string_view text) {
  if (errors_in_row_ >= cfg_.server.max_protocol_errors) return;  // closing: its close is on the way
  auto msg = nv::decode_client_message(text, {cfg_.signal.max_bytes, 65536});
  ++counters_.received[msg.index()];
  if (auto* h = std::get_if<nv::hello>(&msg)) return on_hello(*h);
  if (!peer_id_) {
    // Nothing else is allowed before hello: the client is not speaking this protocol.
    if (auto* e = std::get_if<nv::error>(&msg)) on_error(std::move(*e));
    else on_error({nv::error_code::hello_required, "the first message must be hello",
                   std::string(nv::client_type_names[msg.index()])});
    router_.to_home_in_order(route_, id_, close_request{close_code::policy_error, "hello required"});
    errors_in_row_ = cfg_.server.max_protocol_errors;  // nothing more is taken in
    return;
  }
  if (auto* e = std::get_if<nv::error>(&msg)) return on_error(std::move(*e));
  errors_in_row_ = 0;
  std::visit(overloaded{
                 [&](nv::join& j) { on_join(std::move(j)); },
                 [&](nv::leave& l) {
                   forget(l.swarm);
                   to_owner(std::move(l));
                 },
                 [&](nv::have& h) { to_owner(std::move(h)); },
                 [&](nv::signal& s) { to_owner(std::move(s)); },
                 [&](nv::report& r) { on_report(std::move(r)); },
                 [&](auto&) {},
             },
             msg);
}

void native_session::on_hello(const nv::hello& h) {
  if (peer_id_) return on_error({nv::error_code::already_hello, "hello was already received", "hello"});
  peer_id_ = new_peer_id_();
  max_neighbors_ = std::min(h.max_neighbors.value_or(cfg_.mesh.max_neighbors), cfg_.mesh.max_neighbors);
  nv::welcome welcome;
  welcome.id = *peer_id_;
  welcome.max_neighbors = max_neighbors_;
  // Keep-alive pings go out at half the idle timeout; a client should be heard that often.
  welcome.heartbeat_s = std::max(1u, cfg_.server.idle_timeout_s / 2);
  const auto unix_now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  welcome.ice_servers = ice_servers_for(cfg_, nv::format_peer_id(*peer_id_), unix_now);
  send(std::move(welcome));  // the first reply: nothing can be ahead of it
}

void native_session::on_join(nv::join&& j) {
  auto it = joined_.find(j.swarm);
  if (it == joined_.end()) {
    const std::size_t cap = cfg_.limits.max_swarms_per_connection;
    if (joined_.size() >= cap)
      return on_error({nv::error_code::too_many_swarms, "a connection may join at most " + std::to_string(cap) + " swarms",
                       "join", j.swarm});
    if (!admitted_.token.allows_url(j.swarm))
      return on_error({nv::error_code::not_allowed, "swarm not allowed by the connection's token", "join", j.swarm});
    if (!admitted_.take_swarm(client_))
      return on_error({nv::error_code::too_many_swarms, "too many swarms joined from one address", "join", j.swarm});
    it = joined_.emplace(j.swarm, joined_swarm{0, ++last_ticket_}).first;
  }
  ++it->second.joins;  // one more join of it in flight or done; a refusal gives it back
  to_owner(std::move(j), it->second.ticket);
}

void native_session::on_report(nv::report&& r) {
  // Worth a line: a peer serving corrupt blocks is an attack or a broken cache. One per
  // report (at most 16 ids, at the connection's message rate).
  if (!r.bad_peers.empty()) {
    std::string ids;
    for (auto bad : r.bad_peers) {
      if (!ids.empty()) ids += ',';
      ids += nv::format_peer_id(bad);
    }
    spdlog::warn("conn {} {}: peer {} reports {} for blocks failing the manifest of {}", id_, client_.to_string(),
                 nv::format_peer_id(*peer_id_), ids, r.swarm);
  }
  to_owner(std::move(r));
}

void native_session::to_owner(native_message&& m, std::uint32_t join_ticket) {
  router_.to_owner(route_, native_request{swarm::member_info{id_, *peer_id_, max_neighbors_, where_}, std::move(m),
                                          join_ticket});
}

void native_session::on_error(nv::error&& e) {
  ++counters_.errors[static_cast<std::size_t>(e.code)];
  if (e.code == nv::error_code::signal_too_big) ++counters_.signals_too_big;
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("conn {} {}: protocol error {}: {}", id_, client_.to_string(), nv::to_string(e.code), e.message);
  nv::server_message m = std::move(e);
  const auto type = static_cast<std::uint8_t>(m.index());
  router_.to_home_in_order(route_, id_, outbound{std::make_shared<const std::string>(nv::encode(m)), type});
  if (++errors_in_row_ >= cfg_.server.max_protocol_errors) {
    spdlog::info("conn {} {}: {} invalid messages in a row, closing (1008)", id_, client_.to_string(), errors_in_row_);
    router_.to_home_in_order(route_, id_, close_request{close_code::policy_error, "too many invalid messages"});
  }
}

void native_session::send(nv::server_message&& m) {
  const auto type = m.index();
  if (transport_.send(std::make_shared<const std::string>(nv::encode(m)))) ++counters_.sent[type];
}

void native_session::on_home_message(home_message&& m) {
  std::visit(overloaded{
                 [&](outbound& o) {
                   if (transport_.send(std::move(o.payload))) ++counters_.sent[o.type];
                 },
                 [&](join_refused& r) {
                   // Only when no other join of that swarm is in flight or done does the slot
                   // come back; a refusal from before a leave answers none of the joins since.
                   auto it = joined_.find(r.swarm);
                   if (it != joined_.end() && it->second.ticket == r.ticket && --it->second.joins == 0) forget(r.swarm);
                 },
                 [&](close_request& c) { transport_.close(c.code, c.reason); },
                 [&](pair_released&) {},  // WebTorrent only
                 [&](scrape_result&) {},
             },
             m);
}

void native_session::forget(const std::string& swarm) {
  if (joined_.erase(swarm)) admitted_.give_back_swarms(client_, 1);
}

void native_session::on_closed() {
  admitted_.give_back_swarms(client_, joined_.size());
  router_.connection_closed(route_, connection_gone{id_, peer_id_});
}

}  // namespace swarmcoord::sessions
