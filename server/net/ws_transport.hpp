#pragma once
// The WebSocket transport of one connection (RFC 6455 server side, over a plain socket or
// TLS): reads and decodes frames, hands each complete message to the connection's protocol
// session, queues what the session sends and writes it, throttles reading past the message
// rate, keeps the connection alive with pings, and runs the close handshake. Nothing in it
// knows a protocol; the session talks to it only through sessions::transport.
//
// Lifecycle (phase), one way only:
//   open           messages in and out
//   closing        our close frame is queued after what was queued before it; no message
//                  is taken in or queued any more
//   close_written  our close frame went to the socket (or into the write under way)
//   half_closed    ... and is out: our side of TCP is shut, the client should hang up now
//   closed         the socket is closed; the pending read fails and finishes the session
//   finished       the session is told (swarms left), the connection's slot given back
// Input, beside it: frames (decoding), paused (over the rate, a timer resumes), discarding
// (after the client's close frame or a framing error: read and dropped until it hangs up).
//
// Home thread only.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protocol/websocket.hpp"
#include "server/net/connection.hpp"
#include "server/net/frame_queue.hpp"
#include "server/net/read_backlog.hpp"
#include "server/net/token_bucket.hpp"
#include "server/net/ws_session.hpp"
#include "server/sessions/protocol_session.hpp"
#include "server/sessions/transport.hpp"

namespace swarmcoord::net {

class worker;
class runtime;

template <class Stream>
class ws_transport final : public connection,
                           public sessions::transport,
                           public std::enable_shared_from_this<ws_transport<Stream>> {
 public:
  enum class phase : std::uint8_t { open, closing, close_written, half_closed, closed, finished };
  enum class input : std::uint8_t { frames, paused, discarding };

  // Registers the connection with its worker: id() is valid from here on.
  ws_transport(Stream&& stream, worker& w, runtime& rt, metrics::protocol kind, swarm::ip_address client);
  ~ws_transport() override;

  // Starts with the 101 response; early_bytes are frames the client sent with its request.
  void run(std::unique_ptr<sessions::protocol_session> session, std::string_view accept_key,
           std::string_view early_bytes);

  // sessions::transport
  bool send(std::shared_ptr<const std::string> text) override;
  void close(protocol::websocket::close_code code, std::string_view reason) override;

  // connection
  void deliver(sessions::home_message&& m) override { session_->on_home_message(std::move(m)); }
  void close_going_away() override;
  void tick(std::int64_t now_ms) override;
  void flush() override;
  metrics::protocol kind() const override { return kind_; }
  connection_id id() const override { return id_; }

 private:
  // reading
  void do_read();
  void on_readable(boost::system::error_code ec);
  void on_read_error(boost::system::error_code ec);
  void on_bytes(char* data, std::size_t n);
  void process_pending();
  void after_decode();
  std::size_t decode(char* data, std::size_t size);
  void on_close_frame(const protocol::websocket::event& e);
  void on_frame_error(const protocol::websocket::event& e);
  void pause_reading(std::chrono::nanoseconds wait);
  // writing
  bool enqueue(frame&& f);
  void queue_pong(std::string_view payload);
  void pop_written();
  void write_async(std::size_t skip);
  void on_write_error();
  // closing
  void queue_close(std::string payload);
  void after_close_written();
  void abort();
  void close_socket();
  void finish();

  Stream stream_;
  worker& w_;
  runtime& rt_;
  std::unique_ptr<sessions::protocol_session> session_;
  metrics::protocol kind_;
  phase phase_ = phase::open;
  input input_ = input::frames;
  bool writing_ = false;       // an asynchronous write is under way
  bool flush_queued_ = false;  // on the worker's list of connections to write
  bool ping_sent_ = false;     // a keep-alive ping went out since the client was last heard
  swarm::ip_address client_;
  connection_id id_ = 0;
  protocol::websocket::decoder decoder_;
  read_backlog backlog_;
  std::size_t discarded_ = 0;     // bytes dropped after a close
  std::unique_ptr<char[]> tls_buffer_;
  frame_queue queue_;
  std::size_t queued_bytes_ = 0;
  std::size_t in_flight_ = 0;      // bytes of the asynchronous write under way
  std::int64_t last_heard_ = 0;    // monotonic ms of the last bytes received
  std::int64_t close_started_ = 0;
  token_bucket rate_;
  std::unique_ptr<boost::asio::steady_timer> throttle_;  // only for connections that hit the limit
};

}  // namespace swarmcoord::net
