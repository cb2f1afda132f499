#pragma once
// The native protocol v1 on one connection (/v1/ws, protocol/README.md): hello first, then
// join, have, leave, signal and report, each sent to the owner of its swarm; protocol errors
// answered in order, the connection closed after too many in a row; the swarms joined counted
// against limits.max_swarms_per_connection and the address's limits.swarms_per_address, and
// checked against the swarms its token allows.
// One per connection; home thread only.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include "server/config/config.hpp"
#include "server/metrics/counters.hpp"
#include "server/sessions/admission.hpp"
#include "server/sessions/protocol_session.hpp"
#include "server/sessions/transport.hpp"

namespace swarmcoord::sessions {

class native_session final : public protocol_session {
 public:
  // Hands out a fresh peer id, unique on this instance (worker::new_peer_id).
  using peer_id_source = std::function<nv::peer_id()>;

  native_session(transport& t, router& r, metrics::native_session_counters& counters, const config::config& cfg,
                 connection_id id, swarm::ip_address client, swarm::location where, peer_id_source new_peer_id,
                 admitted admission = {});

  void on_message(std::string_view text) override;
  void on_home_message(home_message&& m) override;
  void on_closed() override;

  std::size_t swarms_joined() const { return joined_.size(); }

 private:
  void on_hello(const nv::hello& h);
  void on_join(nv::join&& j);
  // The swarm is no longer joined: its slot goes back to the connection and its address.
  void forget(const std::string& swarm);
  void on_report(nv::report&& r);
  void to_owner(native_message&& m, std::uint32_t join_ticket = 0);
  void on_error(nv::error&& e);
  void send(nv::server_message&& m);

  transport& transport_;
  router& router_;
  metrics::native_session_counters& counters_;
  const config::config& cfg_;
  connection_id id_;
  swarm::ip_address client_;
  swarm::location where_;
  peer_id_source new_peer_id_;
  admitted admitted_;
  route_state route_;
  unsigned errors_in_row_ = 0;
  std::optional<nv::peer_id> peer_id_;  // set by hello
  std::uint32_t max_neighbors_ = 0;
  // The swarms joined, for limits.max_swarms_per_connection: joins of each sent and not
  // refused, and the ticket those joins carry (a new one after every leave).
  struct joined_swarm {
    unsigned joins = 0;
    std::uint32_t ticket = 0;
  };
  std::unordered_map<std::string, joined_swarm> joined_;
  std::uint32_t last_ticket_ = 0;
};

}  // namespace swarmcoord::sessions
