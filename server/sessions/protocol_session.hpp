#pragma once
// A protocol spoken over one WebSocket connection: it gets the connection's complete messages
// and the results the router brings home, keeps the protocol's per-connection state, and
// talks back only through its transport and its router (sessions/transport.hpp,
// sessions/router.hpp). No sockets, no Asio: unit-tested with fakes of both.
// One per connection; called on the connection's home thread only.
#include <string_view>

#include "server/sessions/router.hpp"

namespace swarmcoord::sessions {

class protocol_session {
 public:
  virtual ~protocol_session() = default;
  // One complete message from the client (never after the transport began closing).
  virtual void on_message(std::string_view text) = 0;
  // A result for this connection, from its own session or a swarm's owner.
  virtual void on_home_message(home_message&& m) = 0;
  // The connection is gone, for whatever reason: called once, last.
  virtual void on_closed() = 0;
};

}  // namespace swarmcoord::sessions
