#pragma once
// What a protocol session needs of its connection: send a text message, close. The WebSocket
// transport (net/ws_transport) is the real one; unit tests use a fake that records.
// Called on the connection's home thread only.
#include <memory>
#include <string>
#include <string_view>

#include "protocol/websocket.hpp"

namespace swarmcoord::sessions {

class transport {
 public:
  virtual ~transport() = default;
  // Queues one text message, shared with other receivers of the same message. False when it
  // was not taken: the connection is closing, or it stopped reading what it is sent and is
  // being dropped for it.
  virtual bool send(std::shared_ptr<const std::string> text) = 0;
  // Sends a close frame after what is queued; messages received afterwards are not handed on.
  virtual void close(protocol::websocket::close_code code, std::string_view reason) = 0;
};

}  // namespace swarmcoord::sessions
