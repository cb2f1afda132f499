#pragma once
// What a worker knows of one of its WebSocket connections. Connections are named by id, never
// by pointer, across threads: the id's top 16 bits are the owning worker's index, and only that
// worker's thread touches the object.
#include <cstdint>
#include <memory>
#include <string>

#include "server/metrics/metrics.hpp"

namespace swarmcoord::net {

using connection_id = std::uint64_t;

inline constexpr unsigned worker_shift = 48;
inline unsigned worker_of(connection_id id) { return static_cast<unsigned>(id >> worker_shift); }

// One encoded message, shared by every connection it fans out to.
struct outbound {
  std::shared_ptr<const std::string> payload;
  std::uint8_t type = 0;  // index into the protocol's sent-type labels
  std::string refused_join;  // native: a swarm the connection did not get into after all
};

class connection {
 public:
  virtual ~connection() = default;
  virtual void send(outbound message) = 0;
  // Closes with 1001 (going away): the client should reconnect, to another instance.
  virtual void close_going_away() = 0;
  // Called about once a second with the monotonic time: keep-alive pings, idle and close
  // deadlines. One sweep per worker costs far less than a timer per connection.
  virtual void tick(std::int64_t now_ms) = 0;
  // Writes what send() queued (see worker::write_later).
  virtual void flush() = 0;
  virtual metrics::protocol kind() const = 0;
  virtual connection_id id() const = 0;
};

}  // namespace swarmcoord::net
