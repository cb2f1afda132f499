#include "server/net/ws_transport.hpp"

#include <array>
#include <span>

#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ws = protocol::websocket;
using tcp = asio::ip::tcp;

namespace {

// After our close frame: how long the client has to answer with its own and hang up.
constexpr std::int64_t close_timeout_ms = 5000;
// Plain reads land in one buffer per thread; only an unfinished frame is copied out of it,
// so an idle connection holds no read buffer at all.
constexpr std::size_t scratch_bytes = 64 * 1024;
// TLS reads can't share a buffer (the read is pending while idle): each holds its own.
constexpr std::size_t tls_read_bytes = 4096;
// Frames gathered into one write: 2 buffers each, under Asio's 64-buffer limit per call.
constexpr std::size_t frames_per_write = 32;
// After a close or a framing error the client's bytes are read and dropped until it hangs up;
// more than this and it is cut off.
constexpr std::size_t max_discarded_bytes = 1 << 20;

char* scratch() {
  thread_local std::unique_ptr<char[]> buffer(new char[scratch_bytes]);
  return buffer.get();
}

constexpr bool is_plain(const tcp::socket*) { return true; }
constexpr bool is_plain(const tls_stream*) { return false; }
tcp::socket& socket_of(tcp::socket& s) { return s; }
tcp::socket& socket_of(tls_stream& s) { return beast::get_lowest_layer(s).socket(); }

bool would_block(boost::system::error_code ec) { return ec == asio::error::would_block || ec == asio::error::try_again; }

}  // namespace

template <class Stream>
ws_transport<Stream>::ws_transport(Stream&& stream, worker& w, runtime& rt, metrics::protocol kind,
                                   swarm::ip_address client)
    : stream_(std::move(stream)), w_(w), rt_(rt), kind_(kind), client_(client),
      decoder_(rt.cfg().server.max_message_bytes), rate_(rt.cfg().server.max_messages_per_second) {
  id_ = w_.register_connection(this);
  auto& c = w_.net_counters();
  ++c.connections[metrics::index_of(kind_)];
  ++c.connections_accepted;
}

template <class Stream>
ws_transport<Stream>::~ws_transport() {
  finish();
}

template <class Stream>
void ws_transport<Stream>::run(std::unique_ptr<sessions::protocol_session> session, std::string_view accept_key,
                               std::string_view early_bytes) {
  session_ = std::move(session);
  last_heard_ = monotonic_ms();
  boost::system::error_code ec;
  if constexpr (is_plain(static_cast<const Stream*>(nullptr))) stream_.non_blocking(true, ec);
  else beast::get_lowest_layer(stream_).expires_never();  // the keep-alive sweep takes over

  auto response = std::make_shared<std::string>(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
  *response += accept_key;
  *response += "\r\nServer: swarmcoord\r\n\r\n";
  frame handshake{std::move(response), ws::opcode::text, true};
  queued_bytes_ += handshake.cost();
  queue_.push_back(std::move(handshake));
  flush();
  if (!early_bytes.empty()) {
    backlog_.assign(early_bytes);
    process_pending();
  } else {
    do_read();
  }
}

template <class Stream>
bool ws_transport<Stream>::send(std::shared_ptr<const std::string> text) {
  if (phase_ != phase::open) return false;
  return enqueue(frame{std::move(text), ws::opcode::text});
}

// Stops taking messages; what is queued goes out, then the close frame.
template <class Stream>
void ws_transport<Stream>::close(ws::close_code code, std::string_view reason) {
  if (phase_ != phase::open) return;
  queue_close(ws::close_payload(code, reason));
}

template <class Stream>
void ws_transport<Stream>::close_going_away() {
  close(ws::close_code::going_away, "server going away");
}

template <class Stream>
void ws_transport<Stream>::tick(std::int64_t now) {
  if (phase_ >= phase::closed) return;
  if (phase_ != phase::open) {
    if (now - close_started_ > close_timeout_ms) close_socket();
    return;
  }
  const std::int64_t idle_ms = std::int64_t{rt_.cfg().server.idle_timeout_s} * 1000;
  const std::int64_t silent = now - last_heard_;
  if (silent >= idle_ms) {
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {} {}: silent for {} s, closed", id_, client_.to_string(), silent / 1000);
    return close_socket();
  }
  // Half the timeout without a word: a ping asks for one (a pong is enough).
  if (silent >= idle_ms / 2 && !ping_sent_) {
    ping_sent_ = true;
    enqueue(frame{std::make_shared<const std::string>(), ws::opcode::ping});
  }
}

// ------------------------------------------------------------------ reading
template <class Stream>
void ws_transport<Stream>::do_read() {
  if (phase_ >= phase::closed) return;
  if constexpr (is_plain(static_cast<const Stream*>(nullptr))) {
    // Wait for readability without a buffer: an idle connection holds none.
    stream_.async_wait(tcp::socket::wait_read,
                       [self = this->shared_from_this()](boost::system::error_code ec) { self->on_readable(ec); });
  } else {
    if (!tls_buffer_) tls_buffer_ = std::make_unique<char[]>(tls_read_bytes);
    stream_.async_read_some(asio::buffer(tls_buffer_.get(), tls_read_bytes),
                            [self = this->shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              if (ec) return self->on_read_error(ec);
                              self->on_bytes(self->tls_buffer_.get(), n);
                            });
  }
}

template <class Stream>
void ws_transport<Stream>::on_readable(boost::system::error_code ec) {
  if (ec) return on_read_error(ec);
  char* buffer = scratch();
  const std::size_t n = stream_.read_some(asio::buffer(buffer, scratch_bytes), ec);
  if (would_block(ec)) return do_read();
  if (ec) return on_read_error(ec);
  on_bytes(buffer, n);
}

template <class Stream>
void ws_transport<Stream>::on_read_error(boost::system::error_code ec) {
  if (ec != asio::error::eof && ec != asio::error::operation_aborted && ec != asio::error::connection_reset &&
      spdlog::should_log(spdlog::level::debug))
    spdlog::debug("conn {} {}: {}", id_, client_.to_string(), ec.message());
  close_socket();
  finish();
}

template <class Stream>
void ws_transport<Stream>::on_bytes(char* data, std::size_t n) {
  last_heard_ = monotonic_ms();
  ping_sent_ = false;
  if (input_ == input::discarding) {
    // After a close: wait for the client to hang up, within reason.
    if ((discarded_ += n) > max_discarded_bytes) return close_socket();
    return do_read();
  }
  backlog_.feed(data, n, [this](char* bytes, std::size_t size) { return decode(bytes, size); });
  after_decode();
}

// Bytes kept from an earlier read (an unfinished frame, or frames left by a pause).
template <class Stream>
void ws_transport<Stream>::process_pending() {
  backlog_.resume([this](char* bytes, std::size_t size) { return decode(bytes, size); });
  after_decode();
}

template <class Stream>
void ws_transport<Stream>::after_decode() {
  backlog_.compact(input_ == input::discarding);
  if (input_ == input::paused || phase_ >= phase::closed) return;
  do_read();
}

// Decodes and handles the frames at data; returns the bytes used. Stops at an unfinished
// frame, at the rate limit (paused) and at a close.
template <class Stream>
std::size_t ws_transport<Stream>::decode(char* data, std::size_t size) {
  std::size_t used = 0;
  while (input_ == input::frames) {
    const auto e = decoder_.next(data + used, size - used);
    if (e.what == ws::event::kind::need_more) break;
    used += e.consumed;
    // Every frame but a close or a failure counts against the rate: fragments too, or
    // endless empty ones would keep a worker busy unthrottled.
    switch (e.what) {
      case ws::event::kind::fragment: break;
      case ws::event::kind::message:
        if (phase_ == phase::open) session_->on_message(e.payload);  // after our close: dropped
        break;
      case ws::event::kind::ping:
        if (phase_ == phase::open) queue_pong(e.payload);
        break;
      case ws::event::kind::pong: break;
      case ws::event::kind::close: on_close_frame(e); return used;
      case ws::event::kind::fail: on_frame_error(e); return used;
      case ws::event::kind::need_more: break;
    }
    if (const auto wait = rate_.take(); wait.count() > 0) pause_reading(wait);
  }
  return used;
}

template <class Stream>
void ws_transport<Stream>::on_close_frame(const ws::event& e) {
  input_ = input::discarding;
  if (phase_ != phase::open) {
    // The answer to our close: once ours is out the handshake is complete, and the server
    // hangs up first (otherwise when ours is written and the client hangs up).
    if (phase_ >= phase::close_written && !writing_) close_socket();
    return;
  }
  // Echo the client's code (none when it gave none), then hang up once the echo is out.
  std::string payload;
  if (e.code != ws::close_code::no_status)
    payload.assign({static_cast<char>(e.raw_code >> 8), static_cast<char>(e.raw_code & 0xFF)});
  queue_close(std::move(payload));
}

template <class Stream>
void ws_transport<Stream>::on_frame_error(const ws::event& e) {
  if (e.code == ws::close_code::too_big) ++w_.net_counters().messages_too_big[metrics::index_of(kind_)];
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("conn {} {}: {}, closing with {}", id_, client_.to_string(), e.reason, static_cast<unsigned>(e.code));
  // The rest of the stream can't be framed any more: it is read and dropped until the
  // client, having read our close frame, hangs up (closing at once could reset the
  // connection before the client read why).
  input_ = input::discarding;
  close(e.code, e.reason);
}

// Stops reading for a while: the client's further messages wait in its TCP send buffer,
// which slows it down without costing anyone else (or us) anything.
template <class Stream>
void ws_transport<Stream>::pause_reading(std::chrono::nanoseconds wait) {
  ++w_.net_counters().reads_throttled;
  input_ = input::paused;
  if (!throttle_) throttle_ = std::make_unique<asio::steady_timer>(w_.io());
  throttle_->expires_after(wait);
  throttle_->async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
    if (self->input_ == input::paused) self->input_ = input::frames;
    if (!ec && self->phase_ < phase::closed) self->process_pending();
  });
}

// ------------------------------------------------------------------ writing
// False when the frame would take the write queue over its limit: the connection is
// dropped, since a client that does not read can't be allowed to grow our memory.
template <class Stream>
bool ws_transport<Stream>::enqueue(frame&& f) {
  if (phase_ >= phase::closed) return false;
  const std::size_t limit = rt_.cfg().server.max_write_queue_bytes;
  if (queued_bytes_ + f.cost() > limit) {
    ++w_.net_counters().slow_consumers_closed;
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {} {}: write queue over {} bytes, disconnecting slow consumer", id_, client_.to_string(), limit);
    close_socket();
    return false;
  }
  queued_bytes_ += f.cost();
  queue_.push_back(std::move(f));
  if (!writing_ && !flush_queued_) {
    flush_queued_ = true;
    w_.write_later(this->shared_from_this());
  }
  return true;
}

// RFC 6455 5.5.3: a pong may answer only the latest of several pings. A pong still
// waiting at the end of the queue takes the new payload instead of a pong more.
template <class Stream>
void ws_transport<Stream>::queue_pong(std::string_view payload) {
  if (!queue_.empty() && queue_.back().op == ws::opcode::pong) {
    frame& last = queue_.back();
    queued_bytes_ -= last.cost();
    last.payload = std::make_shared<const std::string>(payload);
    queued_bytes_ += last.cost();
    return;
  }
  enqueue(frame{std::make_shared<const std::string>(payload), ws::opcode::pong});
}

template <class Stream>
void ws_transport<Stream>::flush() {
  flush_queued_ = false;
  if (writing_ || phase_ >= phase::closed) return;
  if constexpr (is_plain(static_cast<const Stream*>(nullptr))) {
    // Plain sockets: write at once, without a completion handler, as long as the socket
    // takes it; only what it does not take waits for an asynchronous write.
    while (!queue_.empty()) {
      std::array<char, frames_per_write * ws::max_header_bytes> headers;
      std::array<asio::const_buffer, frames_per_write * 2> buffers;
      const std::size_t frames = std::min(queue_.size(), frames_per_write);
      std::size_t count = 0, total = 0;
      for (std::size_t i = 0; i < frames; ++i) {
        const frame& f = queue_.at(i);
        if (!f.raw) {
          char* h = headers.data() + i * ws::max_header_bytes;
          buffers[count++] = asio::buffer(h, ws::write_header(h, f.op, f.payload->size()));
        }
        buffers[count++] = asio::buffer(*f.payload);
        total += f.wire_size();
      }
      boost::system::error_code ec;
      std::size_t written = stream_.write_some(std::span(buffers.data(), count), ec);
      if (would_block(ec)) written = 0;
      else if (ec) return on_write_error();
      const bool partial = written < total;
      while (!queue_.empty() && written >= queue_.at(0).wire_size()) {
        written -= queue_.at(0).wire_size();
        pop_written();
      }
      // The socket's buffer is full: the rest (less what went out of its first frame) waits.
      if (partial) return write_async(written);
    }
    after_close_written();
  } else {
    write_async(0);
  }
}

template <class Stream>
void ws_transport<Stream>::pop_written() {
  const frame& f = queue_.at(0);
  queued_bytes_ -= f.cost();
  if (f.op == ws::opcode::close) phase_ = phase::close_written;
  queue_.pop_front();
}

// Copies the queue, less the `skip` bytes of its first frame already written, into one
// buffer and writes it asynchronously: for TLS always, for plain sockets under back-pressure.
template <class Stream>
void ws_transport<Stream>::write_async(std::size_t skip) {
  if (queue_.empty()) return;
  auto out = std::make_shared<std::string>();
  std::size_t bytes = 0;
  for (std::size_t i = 0; i < queue_.size(); ++i) bytes += queue_.at(i).wire_size();
  out->reserve(bytes);
  while (!queue_.empty()) {
    const frame& f = queue_.at(0);
    if (!f.raw) {
      char h[ws::max_header_bytes];
      out->append(h, ws::write_header(h, f.op, f.payload->size()));
    }
    out->append(*f.payload);
    pop_written();
  }
  out->erase(0, skip);
  writing_ = true;
  in_flight_ = out->size();
  queued_bytes_ += in_flight_;
  asio::async_write(stream_, asio::buffer(*out),
                    [self = this->shared_from_this(), out](boost::system::error_code ec, std::size_t) {
                      self->writing_ = false;
                      self->queued_bytes_ -= self->in_flight_;
                      self->in_flight_ = 0;
                      if (ec) return self->on_write_error();
                      if (!self->queue_.empty()) return self->flush();
                      self->after_close_written();
                    });
}

template <class Stream>
void ws_transport<Stream>::on_write_error() {
  // The read side sees the failure too and finishes the session.
  queue_.clear();
  queued_bytes_ = 0;
  close_socket();
}

// ------------------------------------------------------------------ closing
template <class Stream>
void ws_transport<Stream>::queue_close(std::string payload) {
  phase_ = phase::closing;
  close_started_ = monotonic_ms();
  enqueue(frame{std::make_shared<const std::string>(std::move(payload)), ws::opcode::close});
}

// Our close frame is out: half-close, so that the client reads it and hangs up; the
// connection ends when it does (or at the close deadline of the keep-alive sweep).
template <class Stream>
void ws_transport<Stream>::after_close_written() {
  if (phase_ != phase::close_written) return;
  phase_ = phase::half_closed;
  boost::system::error_code ec;
  socket_of(stream_).shutdown(tcp::socket::shutdown_send, ec);
  if (ec) close_socket();
}

template <class Stream>
void ws_transport<Stream>::close_socket() {
  if (phase_ >= phase::closed) return;
  phase_ = phase::closed;
  boost::system::error_code ec;
  socket_of(stream_).close(ec);
}

// Runs once, when the connection ends for whatever reason: the session tells the owners of
// its swarms, and the connection's slot is given back.
template <class Stream>
void ws_transport<Stream>::finish() {
  if (phase_ == phase::finished) return;
  phase_ = phase::finished;
  // Destroyed with its io_context after the runtime stopped: nobody is left to tell.
  if (rt_.stopped()) return;
  w_.unregister_connection(id_);
  --w_.net_counters().connections[metrics::index_of(kind_)];
  if (session_) session_->on_closed();
  rt_.release(client_);
}

template class ws_transport<tcp::socket>;
template class ws_transport<tls_stream>;

}  // namespace swarmcoord::net
