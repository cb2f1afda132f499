#pragma once
// What a worker knows of one of its WebSocket connections. Connections are named by id, never
// by pointer, across threads: the id names the home worker (swarm/ids.hpp), and only that
// worker's thread touches the object.
#include <cstdint>

#include "server/metrics/counters.hpp"
#include "server/sessions/router.hpp"

namespace swarmcoord::net {

using swarm::connection_id;

class connection {
 public:
  virtual ~connection() = default;
  // A result for the connection's protocol session.
  virtual void deliver(sessions::home_message&& m) = 0;
  // Closes with 1001 (going away): the client should reconnect, to another instance.
  virtual void close_going_away() = 0;
  // Called about once a second with the monotonic time: keep-alive pings, idle and close
  // deadlines. One sweep per worker costs far less than a timer per connection.
  virtual void tick(std::int64_t now_ms) = 0;
  // Writes what was queued since the last flush (see worker::write_later).
  virtual void flush() = 0;
  virtual metrics::protocol kind() const = 0;
  virtual connection_id id() const = 0;
};

}  // namespace swarmcoord::net
