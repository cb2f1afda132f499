#pragma once
// The WebTorrent tracker protocol on one connection (/ and /announce): decodes each message,
// sends announces and answers to the owner of their info_hash and scrapes to every owner
// asked, answers protocol errors, closes after too many in a row, and counts the
// (info_hash, peer_id) pairs the connection holds against tracker.max_peers_per_connection
// across every shard, and against its address's limits.swarms_per_address. A token that
// lists swarms limits its announces to those info_hashes.
// One per connection; home thread only.
#include <cstdint>
#include <vector>

#include "server/metrics/counters.hpp"
#include "server/sessions/admission.hpp"
#include "server/sessions/protocol_session.hpp"
#include "server/sessions/transport.hpp"

namespace swarmcoord::sessions {

class webtorrent_session final : public protocol_session {
 public:
  struct limits {
    unsigned max_protocol_errors = 10;      // server.max_protocol_errors
    std::size_t max_peers = 100;            // tracker.max_peers_per_connection
    std::size_t max_scrape_all = 1000;      // tracker.max_scrape_all
  };

  webtorrent_session(transport& t, router& r, metrics::webtorrent_session_counters& counters, connection_id id,
                     swarm::ip_address client, limits l, admitted admission = {});

  void on_message(std::string_view text) override;
  void on_home_message(home_message&& m) override;
  void on_closed() override;

  std::size_t pairs_held() const { return pairs_.size(); }

 private:
  void on_announce(wt::announce&& a);
  void on_request_error(wt::request_error&& e, bool counts_toward_close);
  void reply(wt::server_message&& m);
  static std::uint64_t pair_key(const protocol::binary_id& info_hash, const protocol::binary_id& peer_id);

  transport& transport_;
  router& router_;
  metrics::webtorrent_session_counters& counters_;
  connection_id id_;
  swarm::ip_address client_;
  limits limits_;
  admitted admitted_;
  route_state route_;
  unsigned errors_in_row_ = 0;
  // The pairs this connection announced and still holds, as keyed hashes, sorted: a few per
  // client (a sorted vector beats a set there), up to tracker.max_peers_per_connection for
  // a busy one. A pair leaves when the client stops it, or when its owner reports it
  // released (moved to another connection, or expired).
  struct held_pair {
    std::uint64_t key;
    std::uint32_t ticket;  // of the latest announce of the pair
    friend bool operator<(const held_pair& p, std::uint64_t key) { return p.key < key; }
  };
  std::vector<held_pair> pairs_;
  std::uint32_t last_ticket_ = 0;
};

}  // namespace swarmcoord::sessions
