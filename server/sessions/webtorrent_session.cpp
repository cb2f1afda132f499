#include "server/sessions/webtorrent_session.hpp"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "protocol/keyed_hash.hpp"

namespace swarmcoord::sessions {

webtorrent_session::webtorrent_session(transport& t, router& r, metrics::webtorrent_session_counters& counters,
                                       connection_id id, swarm::ip_address client, limits l, admitted admission)
    : transport_(t), router_(r), counters_(counters), id_(id), client_(client), limits_(l),
      admitted_(std::move(admission)) {}

std::uint64_t webtorrent_session::pair_key(const protocol::binary_id& info_hash, const protocol::binary_id& peer_id) {
  // Keyed: a client can't pick pairs that collide (a collision would only lend it a slot).
  char both[2 * protocol::binary_id::size];
  std::memcpy(both, info_hash.bytes.data(), protocol::binary_id::size);
  std::memcpy(both + protocol::binary_id::size, peer_id.bytes.data(), protocol::binary_id::size);
  return protocol::keyed_hash(std::string_view(both, sizeof both));
}

void webtorrent_session::on_message(std::string_view text) {
  if (errors_in_row_ >= limits_.max_protocol_errors) return;  // closing: its close is on the way
  auto msg = wt::decode_client_message(text);
  ++counters_.received[msg.index()];
  std::visit(overloaded{
                 [&](wt::request_error& e) { on_request_error(std::move(e), true); },
                 [&](wt::announce& a) {
                   errors_in_row_ = 0;
                   on_announce(std::move(a));
                 },
                 [&](wt::answer& a) {
                   errors_in_row_ = 0;
                   router_.to_owner(route_, answer_request{id_, std::move(a)});
                 },
                 [&](wt::scrape& s) {
                   errors_in_row_ = 0;
                   // A scrape of everything, switched off: answered here, no owner asked.
                   if (s.all && limits_.max_scrape_all == 0) return on_home_message(scrape_result{{}, true});
                   router_.scrape(id_, std::move(s));
                 },
             },
             msg);
}

void webtorrent_session::on_announce(wt::announce&& a) {
  const std::uint64_t key = pair_key(a.info_hash, a.peer_id);
  const auto at = std::lower_bound(pairs_.begin(), pairs_.end(), key);
  const bool held = at != pairs_.end() && at->key == key;
  const std::uint32_t ticket = ++last_ticket_;
  if (a.event == wt::announce_event::stopped) {
    // The owner drops the pair if this connection owns it; either way it no longer counts.
    if (held) {
      pairs_.erase(at);
      admitted_.give_back_swarms(client_, 1);
    }
  } else if (!admitted_.token.allows_info_hash(a.info_hash)) {
    return on_request_error({wt::error_reason::not_allowed, "info_hash not allowed by the connection's token",
                             a.info_hash, "announce"},
                            false);
  } else if (held) {
    at->ticket = ticket;  // releases from before this announce are stale
  } else {
    // A new pair, or one moving here from another connection: the cap covers every shard.
    if (pairs_.size() >= limits_.max_peers)
      return on_request_error({wt::error_reason::too_many_peers, "too many peer_id/info_hash pairs on one connection",
                               a.info_hash, "announce"},
                              false);
    if (!admitted_.take_swarm(client_))
      return on_request_error({wt::error_reason::too_many_peers, "too many swarms announced into from one address",
                               a.info_hash, "announce"},
                              false);
    pairs_.insert(at, held_pair{key, ticket});
  }
  router_.to_owner(route_, announce_request{id_, client_, std::move(a), ticket});
}

// counts_toward_close: a message that could not be decoded. A valid announce refused for the
// cap is answered without closing, as the reference answers errors about a known info_hash.
void webtorrent_session::on_request_error(wt::request_error&& e, bool counts_toward_close) {
  ++counters_.errors[static_cast<std::size_t>(e.reason)];
  // The encoder keeps the reply valid UTF-8 even when the message quotes hostile bytes.
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("conn {} {}: protocol error {}: {}", id_, client_.to_string(), wt::to_string(e.reason), e.message);
  reply(std::move(e));
  if (counts_toward_close && ++errors_in_row_ >= limits_.max_protocol_errors) {
    spdlog::info("conn {} {}: {} invalid messages in a row, closing (1008)", id_, client_.to_string(), errors_in_row_);
    router_.to_home_in_order(route_, id_,
                             close_request{protocol::websocket::close_code::policy_error, "too many invalid messages"});
  }
}

void webtorrent_session::reply(wt::server_message&& m) {
  const auto type = static_cast<std::uint8_t>(m.index());
  router_.to_home_in_order(route_, id_, outbound{std::make_shared<const std::string>(wt::encode(m)), type});
}

void webtorrent_session::on_home_message(home_message&& m) {
  std::visit(overloaded{
                 [&](outbound& o) {
                   if (transport_.send(std::move(o.payload))) ++counters_.sent[o.type];
                 },
                 [&](pair_released& r) {
                   // Only a release of the latest announce: one that crossed a newer announce
                   // of the pair on its way here is stale (the owner may have it ours again).
                   const std::uint64_t key = pair_key(r.info_hash, r.peer_id);
                   auto at = std::lower_bound(pairs_.begin(), pairs_.end(), key);
                   if (at != pairs_.end() && at->key == key && at->ticket == r.ticket) {
                     pairs_.erase(at);
                     admitted_.give_back_swarms(client_, 1);
                   }
                 },
                 [&](scrape_result& r) {
                   wt::scrape_response response{std::move(r.files)};
                   if (r.all && response.files.size() > limits_.max_scrape_all)
                     response.files.resize(limits_.max_scrape_all);
                   wt::server_message reply = std::move(response);
                   if (transport_.send(std::make_shared<const std::string>(wt::encode(reply)))) ++counters_.sent[reply.index()];
                 },
                 [&](close_request& c) { transport_.close(c.code, c.reason); },
                 [&](join_refused&) {},  // native only
             },
             m);
}

void webtorrent_session::on_closed() {
  admitted_.give_back_swarms(client_, pairs_.size());
  router_.connection_closed(route_, connection_gone{id_, std::nullopt});
}

}  // namespace swarmcoord::sessions
