#include "server/net/ws_session.hpp"

#include <array>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "protocol/websocket.hpp"
#include "server/net/ice.hpp"
#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ws = protocol::websocket;
using tcp = asio::ip::tcp;
namespace wt = protocol::webtorrent;
namespace nv = protocol::native;

namespace {

constexpr auto wt_index = static_cast<std::size_t>(metrics::protocol::webtorrent);
constexpr auto native_index = static_cast<std::size_t>(metrics::protocol::native);
// After our close frame: how long the client has to answer with its own and hang up.
constexpr std::int64_t close_timeout_ms = 5000;
// Plain reads land in one buffer per thread; only an unfinished frame is copied out of it,
// so an idle connection holds no read buffer at all.
constexpr std::size_t scratch_bytes = 64 * 1024;
// TLS reads can't share a buffer (the read is pending while idle): each holds its own.
constexpr std::size_t tls_read_bytes = 4096;
// Frames gathered into one write: 2 buffers each, under Asio's 64-buffer limit per call.
constexpr std::size_t frames_per_write = 32;
// What a queued frame costs besides its bytes (its slot and the string's heap block), charged
// against server.max_write_queue_bytes so that a flood of empty frames is bounded too.
constexpr std::size_t frame_overhead = 64;
// After a close or a framing error the client's bytes are read and dropped until it hangs up;
// more than this and it is cut off.
constexpr std::size_t max_discarded_bytes = 1 << 20;

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

char* scratch() {
  thread_local std::unique_ptr<char[]> buffer(new char[scratch_bytes]);
  return buffer.get();
}

// One frame waiting to be written: a message shared with the other receivers of a fan-out,
// or a control frame. The handshake response rides the same queue, without a frame header.
struct frame {
  std::shared_ptr<const std::string> payload;
  ws::opcode op = ws::opcode::text;
  bool raw = false;
};

// A vector with a moving head, allocated only while frames wait (an empty std::deque already
// holds a 512-byte block), and given back once drained.
class frame_queue {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  frame& at(std::size_t i) { return items_[head_ + i]; }
  void push_back(frame&& f) { items_.push_back(std::move(f)); }
  void pop_front() {
    items_[head_++] = frame{};
    if (head_ == items_.size()) clear();
  }
  void clear() {
    items_.clear();
    head_ = 0;
    if (items_.capacity() > 4) items_.shrink_to_fit();
  }

 private:
  std::vector<frame> items_;
  std::size_t head_ = 0;
};

constexpr bool is_plain(const tcp::socket*) { return true; }
constexpr bool is_plain(const tls_stream*) { return false; }
tcp::socket& socket_of(tcp::socket& s) { return s; }
tcp::socket& socket_of(tls_stream& s) { return beast::get_lowest_layer(s).socket(); }

template <class Stream>
class ws_session final : public connection, public std::enable_shared_from_this<ws_session<Stream>> {
  static constexpr bool plain = is_plain(static_cast<const Stream*>(nullptr));

 public:
  ws_session(Stream&& stream, worker& w, runtime& rt, metrics::protocol kind, swarm::ip_address client)
      : stream_(std::move(stream)), w_(w), rt_(rt), kind_(kind), client_(client),
        decoder_(rt.cfg().server.max_message_bytes) {
    if (kind_ == metrics::protocol::native) where_ = rt_.locator().locate(client_);
  }

  ~ws_session() override { finish(); }

  void run(const ws_handoff& h) {
    id_ = w_.register_connection(this);
    registered_ = true;
    last_shard_ = w_.index();
    tokens_ = rt_.cfg().server.max_messages_per_second;
    refilled_ = std::chrono::steady_clock::now();
    last_heard_ = monotonic_ms();
    auto& c = w_.counters();
    ++c.connections[static_cast<std::size_t>(kind_)];
    ++c.connections_accepted;
    boost::system::error_code ec;
    if constexpr (plain) stream_.non_blocking(true, ec);
    else beast::get_lowest_layer(stream_).expires_never();  // the keep-alive sweep takes over

    auto response = std::make_shared<std::string>(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    *response += h.accept_key;
    *response += "\r\nServer: swarmcoord\r\n\r\n";
    frame handshake{std::move(response), ws::opcode::text, true};
    queued_bytes_ += cost(handshake);
    queue_.push_back(std::move(handshake));
    flush();
    if (!h.early_bytes.empty()) {
      pending_.assign(h.early_bytes);
      pending_head_ = 0;
      process_pending();
    } else {
      do_read();
    }
  }

  void send(outbound m) override {
    if (closing_) return;
    // A join counted against limits.max_swarms_per_connection was refused by its shard. Only
    // when no other join of that swarm is in flight or done does the slot come back.
    if (!m.refused_join.empty())
      if (auto it = joined_.find(m.refused_join); it != joined_.end() && --it->second == 0) joined_.erase(it);
    if (enqueue(frame{std::move(m.payload), ws::opcode::text})) ++w_.counters().sent[static_cast<std::size_t>(kind_)][m.type];
  }

  void close_going_away() override { begin_close(ws::close_code::going_away, "server going away"); }

  void tick(std::int64_t now) override {
    if (!open_) return;
    if (closing_) {
      if (close_started_ != 0 && now - close_started_ > close_timeout_ms) abort();
      return;
    }
    const std::int64_t idle_ms = std::int64_t{rt_.cfg().server.idle_timeout_s} * 1000;
    const std::int64_t silent = now - last_heard_;
    if (silent >= idle_ms) {
      if (spdlog::should_log(spdlog::level::debug))
        spdlog::debug("conn {} {}: silent for {} s, closed", id_, client_.to_string(), silent / 1000);
      return abort();
    }
    // Half the timeout without a word: a ping asks for one (a pong is enough).
    if (silent >= idle_ms / 2 && !ping_sent_) {
      ping_sent_ = true;
      enqueue(frame{std::make_shared<const std::string>(), ws::opcode::ping});
    }
  }

  metrics::protocol kind() const override { return kind_; }
  connection_id id() const override { return id_; }

 private:
  // ------------------------------------------------------------------ reading
  void do_read() {
    if (!open_) return;
    if constexpr (plain) {
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

  void on_readable(boost::system::error_code ec) {
    if (ec) return on_read_error(ec);
    char* buffer = scratch();
    const std::size_t n = stream_.read_some(asio::buffer(buffer, scratch_bytes), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) return do_read();
    if (ec) return on_read_error(ec);
    on_bytes(buffer, n);
  }

  void on_read_error(boost::system::error_code ec) {
    if (ec != asio::error::eof && ec != asio::error::operation_aborted && ec != asio::error::connection_reset &&
        spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {} {}: {}", id_, client_.to_string(), ec.message());
    close_socket();
    finish();
  }

  void on_bytes(char* data, std::size_t n) {
    last_heard_ = monotonic_ms();
    ping_sent_ = false;
    if (discarding_) {
      // After a close: wait for the client to hang up, within reason.
      if ((discarded_ += n) > max_discarded_bytes) return close_socket();
      return do_read();
    }
    if (pending_head_ == pending_.size()) {
      // The common case: whole frames straight from the read buffer.
      const std::size_t used = decode(data, n);
      if (used < n && !discarding_) {
        pending_.assign(data + used, n - used);
        pending_head_ = 0;
      }
    } else {
      pending_.append(data, n);
      pending_head_ += decode(pending_.data() + pending_head_, pending_.size() - pending_head_);
    }
    after_decode();
  }

  // Bytes kept from an earlier read (an unfinished frame, or frames left by a pause).
  void process_pending() {
    pending_head_ += decode(pending_.data() + pending_head_, pending_.size() - pending_head_);
    after_decode();
  }

  void after_decode() {
    if (discarding_ || pending_head_ == pending_.size()) {
      // Most messages fit one read: give back whatever an unfinished one needed.
      if (pending_.capacity() > 256) pending_ = std::string();
      else pending_.clear();
      pending_head_ = 0;
    } else if (pending_head_ * 2 >= pending_.size()) {
      // Decoded bytes go once they are the larger part: a paused backlog is not moved for
      // every message taken from it, and an unfinished frame keeps no more than it needs.
      pending_.erase(0, pending_head_);
      pending_head_ = 0;
      if (pending_.capacity() > 2 * pending_.size() + 4096) pending_.shrink_to_fit();
    }
    if (paused_) return;
    if (!open_) return;
    do_read();
  }

  // Decodes and handles the frames at data; returns the bytes used. Stops at an unfinished
  // frame, at the rate limit (paused_) and at a close.
  std::size_t decode(char* data, std::size_t size) {
    std::size_t used = 0;
    while (!discarding_ && !paused_) {
      const auto e = decoder_.next(data + used, size - used);
      if (e.what == ws::event::kind::need_more) break;
      used += e.consumed;
      // Every frame but a close or a failure counts against the rate: fragments too, or
      // endless empty ones would keep a worker busy unthrottled.
      switch (e.what) {
        case ws::event::kind::fragment: break;
        case ws::event::kind::message:
          if (closing_) break;  // our close is out: nothing more is taken in
          if (kind_ == metrics::protocol::native) on_native_message(e.payload);
          else on_message(e.payload);
          break;
        case ws::event::kind::ping:
          if (!closing_) queue_pong(e.payload);
          break;
        case ws::event::kind::pong: break;
        case ws::event::kind::close: on_close_frame(e); return used;
        case ws::event::kind::fail: on_frame_error(e); return used;
        case ws::event::kind::need_more: break;
      }
      if (const auto wait = take_token(); wait.count() > 0) pause_reading(wait);
    }
    return used;
  }

  void on_close_frame(const ws::event& e) {
    discarding_ = true;
    if (closing_) {
      // The answer to our close: once ours is out the handshake is complete, and the server
      // hangs up first (otherwise when ours is written and the client hangs up).
      if (close_written_ && !writing_) close_socket();
      return;
    }
    // Echo the client's code (none when it gave none), then hang up once the echo is out.
    std::string payload;
    if (e.code != ws::close_code::no_status) payload.assign({static_cast<char>(e.raw_code >> 8), static_cast<char>(e.raw_code & 0xFF)});
    queue_close(std::move(payload));
  }

  void on_frame_error(const ws::event& e) {
    if (e.code == ws::close_code::too_big) {
      // Labelled after the decoder's reasons, as main.cpp lists them.
      const std::size_t too_big = kind_ == metrics::protocol::native ? nv::error_code_count : wt::error_reason_count;
      ++w_.counters().errors[static_cast<std::size_t>(kind_)][too_big];
    }
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {} {}: {}, closing with {}", id_, client_.to_string(), e.reason, static_cast<unsigned>(e.code));
    // The rest of the stream can't be framed any more: it is read and dropped until the
    // client, having read our close frame, hangs up (closing at once could reset the
    // connection before the client read why).
    discarding_ = true;
    begin_close(e.code, e.reason);
  }

  // Token bucket of server.max_messages_per_second, as deep as one second of it. Returns how
  // long to wait before the next read (zero: go on): until 20 ms worth of messages may go,
  // so that a throttled client is woken up for a batch, not for every message.
  std::chrono::nanoseconds take_token() {
    const double rate = rt_.cfg().server.max_messages_per_second;
    const auto now = std::chrono::steady_clock::now();
    tokens_ = std::min(rate, tokens_ + rate * std::chrono::duration<double>(now - refilled_).count());
    refilled_ = now;
    tokens_ -= 1;
    if (tokens_ >= 0) return {};
    const double batch = std::max(1.0, rate / 50);
    return std::chrono::nanoseconds(static_cast<std::int64_t>((batch - tokens_) / rate * 1e9));
  }

  // Stops reading for a while: the client's further messages wait in its TCP send buffer,
  // which slows it down without costing anyone else (or us) anything.
  void pause_reading(std::chrono::nanoseconds wait) {
    ++w_.counters().reads_throttled;
    paused_ = true;
    if (!throttle_) throttle_ = std::make_unique<asio::steady_timer>(w_.io());
    throttle_->expires_after(wait);
    throttle_->async_wait([self = this->shared_from_this()](boost::system::error_code ec) {
      self->paused_ = false;
      if (!ec && self->open_) self->process_pending();
    });
  }

  // ------------------------------------------------------------------ writing
  // False when the frame would take the write queue over its limit: the connection is
  // dropped, since a client that does not read can't be allowed to grow our memory.
  bool enqueue(frame&& f) {
    if (!open_) return false;
    if (queued_bytes_ + cost(f) > rt_.cfg().server.max_write_queue_bytes) {
      ++w_.counters().slow_consumers_closed;
      if (spdlog::should_log(spdlog::level::debug))
        spdlog::debug("conn {} {}: write queue over {} bytes, disconnecting slow consumer", id_,
                      client_.to_string(), rt_.cfg().server.max_write_queue_bytes);
      abort();
      return false;
    }
    queued_bytes_ += cost(f);
    queue_.push_back(std::move(f));
    if (!writing_ && !flush_queued_) {
      flush_queued_ = true;
      w_.write_later(this->shared_from_this());
    }
    return true;
  }

  // RFC 6455 5.5.3: a pong may answer only the latest of several pings. A pong still
  // waiting at the end of the queue takes the new payload instead of a pong more.
  void queue_pong(std::string_view payload) {
    if (!queue_.empty() && queue_.at(queue_.size() - 1).op == ws::opcode::pong) {
      frame& last = queue_.at(queue_.size() - 1);
      queued_bytes_ -= cost(last);
      last.payload = std::make_shared<const std::string>(payload);
      queued_bytes_ += cost(last);
      return;
    }
    enqueue(frame{std::make_shared<const std::string>(payload), ws::opcode::pong});
  }

  static std::size_t cost(const frame& f) { return frame_size(f) + frame_overhead; }

  static std::size_t frame_size(const frame& f) {
    return (f.raw ? 0 : ws::header_size(f.payload->size())) + f.payload->size();
  }

  void flush() override {
    flush_queued_ = false;
    if (writing_ || !open_) return;
    if constexpr (plain) {
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
          total += frame_size(f);
        }
        boost::system::error_code ec;
        std::size_t written = stream_.write_some(std::span(buffers.data(), count), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) written = 0;
        else if (ec) return on_write_error(ec);
        const bool partial = written < total;
        while (!queue_.empty() && written >= frame_size(queue_.at(0))) {
          written -= frame_size(queue_.at(0));
          pop_written();
        }
        // The socket's buffer is full: the rest (less what went out of its first frame) waits.
        if (partial) return write_async(written);
      }
      if (close_queued_) after_close_written();
    } else {
      write_async(0);
    }
  }

  void pop_written() {
    const frame& f = queue_.at(0);
    queued_bytes_ -= cost(f);
    if (f.op == ws::opcode::close) close_written_ = true;
    queue_.pop_front();
  }

  // Copies the queue, less the `skip` bytes of its first frame already written, into one
  // buffer and writes it asynchronously: for TLS always, for plain sockets under back-pressure.
  void write_async(std::size_t skip) {
    if (queue_.empty()) return;
    auto out = std::make_shared<std::string>();
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < queue_.size(); ++i) bytes += frame_size(queue_.at(i));
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
                        if (ec) return self->on_write_error(ec);
                        if (!self->queue_.empty()) return self->flush();
                        if (self->close_queued_) self->after_close_written();
                      });
  }

  void on_write_error(boost::system::error_code) {
    // The read side sees the failure too and finishes the session.
    queue_.clear();
    queued_bytes_ = 0;
    close_socket();
  }

  // ------------------------------------------------------------------ closing
  // Stops taking messages; what is queued goes out, then the close frame.
  void begin_close(ws::close_code code, std::string_view reason = {}) {
    if (closing_) return;
    queue_close(ws::close_payload(code, reason));
  }

  void queue_close(std::string payload) {
    closing_ = true;
    close_queued_ = true;
    close_started_ = monotonic_ms();
    enqueue(frame{std::make_shared<const std::string>(std::move(payload)), ws::opcode::close});
  }

  // Our close frame is out: half-close, so that the client reads it and hangs up; the
  // connection ends when it does (or at the close deadline of the keep-alive sweep).
  void after_close_written() {
    if (!close_written_ || shut_down_) return;
    shut_down_ = true;
    boost::system::error_code ec;
    socket_of(stream_).shutdown(tcp::socket::shutdown_send, ec);
    if (ec) close_socket();
  }

  void abort() {
    closing_ = true;
    close_socket();
  }

  void close_socket() {
    if (!open_) return;
    open_ = false;
    boost::system::error_code ec;
    socket_of(stream_).close(ec);
  }

  // ------------------------------------------------------------------ the protocols
  void on_message(std::string_view text) {
    auto msg = wt::decode_client_message(text);
    auto& c = w_.counters();
    ++c.received[wt_index][msg.index()];
    std::visit(overloaded{
                   [&](wt::request_error& e) { on_protocol_error(std::move(e)); },
                   [&](wt::announce& a) {
                     errors_in_row_ = 0;
                     const unsigned shard = use_shard(a.info_hash);
                     rt_.run_on(shard, [&target = rt_.at(shard), id = id_, client = client_,
                                        a = std::move(a)]() mutable {
                       target.handle_announce(id, client, std::move(a));
                     });
                   },
                   [&](wt::answer& a) {
                     errors_in_row_ = 0;
                     const unsigned shard = use_shard(a.info_hash);
                     rt_.run_on(shard, [&target = rt_.at(shard), id = id_, a = std::move(a)]() mutable {
                       target.handle_answer(id, std::move(a));
                     });
                   },
                   [&](wt::scrape& s) {
                     errors_in_row_ = 0;
                     scrape(std::move(s));
                   },
               },
               msg);
  }

  template <class Key>
  unsigned use_shard(const Key& key) {
    const unsigned shard = rt_.shard_of(key);
    shards_used_ |= std::uint64_t{1} << shard;
    last_shard_ = shard;
    return shard;
  }

  void on_native_message(std::string_view text) {
    auto msg = nv::decode_client_message(text, {rt_.cfg().signal.max_bytes, 65536});
    ++w_.counters().received[native_index][msg.index()];
    if (auto* h = std::get_if<nv::hello>(&msg)) return on_hello(*h);
    if (!peer_id_) {
      // Nothing else is allowed before hello: the client is not speaking this protocol.
      if (auto* e = std::get_if<nv::error>(&msg)) native_error(std::move(*e));
      else native_error({nv::error_code::hello_required, "the first message must be hello",
                         std::string(nv::client_type_names[msg.index()])});
      return begin_close(ws::close_code::policy_error, "hello required");
    }
    if (auto* e = std::get_if<nv::error>(&msg)) return native_error(std::move(*e));
    errors_in_row_ = 0;
    std::visit(overloaded{
                   [&](nv::join& j) {
                     auto it = joined_.find(j.swarm);
                     if (it == joined_.end()) {
                       if (joined_.size() >= rt_.cfg().limits.max_swarms_per_connection)
                         return native_error({nv::error_code::too_many_swarms,
                                              "a connection may join at most " +
                                                  std::to_string(rt_.cfg().limits.max_swarms_per_connection) + " swarms",
                                              "join", j.swarm});
                       it = joined_.emplace(j.swarm, 0).first;
                     }
                     ++it->second;  // one more join of it in flight or done
                     to_mesh(std::move(j));
                   },
                   [&](nv::leave& l) {
                     joined_.erase(l.swarm);
                     to_mesh(std::move(l));
                   },
                   [&](nv::have& h) { to_mesh(std::move(h)); },
                   [&](nv::signal& sig) { to_mesh(std::move(sig)); },
                   [&](nv::report& r) {
                     // Worth a line: a peer serving corrupt blocks is an attack or a broken cache.
                     // One per report (at most 16 ids, at the connection's message rate).
                     if (!r.bad_peers.empty()) {
                       std::string ids;
                       for (auto bad : r.bad_peers) {
                         if (!ids.empty()) ids += ',';
                         ids += nv::format_peer_id(bad);
                       }
                       spdlog::warn("conn {} {}: peer {} reports {} for blocks failing the manifest of {}", id_,
                                    client_.to_string(), nv::format_peer_id(peer_id_.value_or(0)), ids, r.swarm);
                     }
                     to_mesh(std::move(r));
                   },
                   [&](auto&) {},
               },
               msg);
  }

  void on_hello(const nv::hello& h) {
    if (peer_id_) return native_error({nv::error_code::already_hello, "hello was already received", "hello"});
    peer_id_ = w_.new_peer_id();
    native_client_ = h.native;
    max_neighbors_ = std::min(h.max_neighbors.value_or(rt_.cfg().mesh.max_neighbors), rt_.cfg().mesh.max_neighbors);
    nv::welcome welcome;
    welcome.id = *peer_id_;
    welcome.max_neighbors = max_neighbors_;
    // Keep-alive pings go out at half the idle timeout; a client should be heard that often.
    welcome.heartbeat_s = std::max(1u, rt_.cfg().server.idle_timeout_s / 2);
    welcome.ice_servers = ice_servers_for(rt_.cfg(), nv::format_peer_id(*peer_id_),
                                          std::chrono::duration_cast<std::chrono::seconds>(
                                              std::chrono::system_clock::now().time_since_epoch())
                                              .count());
    send_native(std::move(welcome));
  }

  template <class Message>
  void to_mesh(Message&& m) {
    const unsigned shard = use_shard(m.swarm);
    swarm::member_info who{id_, *peer_id_, max_neighbors_, where_};
    rt_.run_on(shard, [&target = rt_.at(shard), who, m = std::forward<Message>(m)]() mutable {
      target.handle_native(who, std::move(m));
    });
  }

  void native_error(nv::error&& e) {
    auto& c = w_.counters();
    ++c.errors[native_index][static_cast<std::size_t>(e.code)];
    if (e.code == nv::error_code::signal_too_big) ++c.signal_failures[2];
    if (e.code == nv::error_code::peer_not_found) ++c.signal_failures[1];
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {} {}: protocol error {}: {}", id_, client_.to_string(), nv::to_string(e.code), e.message);
    const bool give_up = ++errors_in_row_ >= rt_.cfg().server.max_protocol_errors;
    in_order([this, e = std::move(e), give_up]() mutable {
      send_native(std::move(e));
      if (give_up) {
        spdlog::info("conn {} {}: {} invalid messages in a row, closing (1008)", id_, client_.to_string(),
                     errors_in_row_);
        begin_close(ws::close_code::policy_error, "too many invalid messages");
      }
    });
  }

  // Runs fn on this connection after the replies to its earlier messages. A reply from another
  // worker's shard comes back through a post; fn takes the same road (via that shard, whose
  // queue and then ours are first in, first out), so that it can't overtake.
  template <class Fn>
  void in_order(Fn fn) {
    if (last_shard_ == w_.index()) return fn();
    rt_.run_on(last_shard_, [&owner = w_, self = this->weak_from_this(), fn = std::move(fn)]() mutable {
      boost::asio::post(owner.io(), [self = std::move(self), fn = std::move(fn)]() mutable {
        if (auto alive = self.lock()) fn();
      });
    });
  }

  void send_native(nv::server_message&& m) {
    const auto type = static_cast<std::uint8_t>(m.index());
    send(outbound{std::make_shared<const std::string>(nv::encode(m)), type});
  }

  void scrape(wt::scrape&& s) {
    runtime* rt = &rt_;
    auto hashes = std::make_shared<const std::vector<protocol::binary_id>>(std::move(s.info_hashes));
    const bool all = s.all;
    const std::size_t cap = rt_.cfg().tracker.max_scrape_all;
    // Only the workers whose shards hold the info_hashes asked for (all of them for "all").
    std::uint64_t shards = all ? ~std::uint64_t{0} : 0;
    for (const auto& h : *hashes) shards |= std::uint64_t{1} << rt_.shard_of(h);
    rt_.gather<std::vector<wt::scrape_file>>(
        w_.io().get_executor(),
        [rt, hashes, all](worker& w) {
          std::vector<wt::scrape_file> files;
          if (all) {
            w.tracker().scrape_all(files);
          } else {
            std::vector<protocol::binary_id> mine;
            for (const auto& h : *hashes)
              if (rt->shard_of(h) == w.index()) mine.push_back(h);
            w.tracker().scrape(mine, files);
          }
          return files;
        },
        [&w = w_, id = id_, all, cap](std::vector<std::vector<wt::scrape_file>> parts) {
          wt::scrape_response r;
          for (auto& p : parts) r.files.insert(r.files.end(), p.begin(), p.end());
          if (all && r.files.size() > cap) r.files.resize(cap);
          wt::server_message m = std::move(r);
          w.deliver(id, outbound{std::make_shared<const std::string>(wt::encode(m)),
                                 static_cast<std::uint8_t>(m.index())});
        },
        shards);
  }

  void on_protocol_error(wt::request_error&& e) {
    auto& c = w_.counters();
    ++c.errors[wt_index][static_cast<std::size_t>(e.reason)];
    // The encoder keeps the reply valid UTF-8 even when the message quotes hostile bytes.
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("conn {} {}: protocol error {}: {}", id_, client_.to_string(), wt::to_string(e.reason), e.message);
    wt::server_message m = std::move(e);
    send(outbound{std::make_shared<const std::string>(wt::encode(m)), static_cast<std::uint8_t>(m.index())});
    if (++errors_in_row_ >= rt_.cfg().server.max_protocol_errors) {
      spdlog::info("conn {} {}: {} invalid messages in a row, closing (1008)", id_, client_.to_string(), errors_in_row_);
      begin_close(ws::close_code::policy_error, "too many invalid messages");
    }
  }

  // Runs once, when the connection ends for whatever reason: the shards that saw this
  // connection drop its peers, and the connection's slot is given back.
  void finish() {
    if (!registered_) return;
    registered_ = false;
    closing_ = true;
    // Destroyed with its io_context after the runtime stopped: nobody is left to tell.
    if (rt_.stopped()) return;
    w_.unregister_connection(id_);
    --w_.counters().connections[static_cast<std::size_t>(kind_)];
    for (unsigned shard = 0; shards_used_ != 0; ++shard, shards_used_ >>= 1) {
      if (!(shards_used_ & 1)) continue;
      if (kind_ == metrics::protocol::native)
        rt_.run_on(shard, [&target = rt_.at(shard), peer = *peer_id_] { target.handle_peer_gone(peer); });
      else
        rt_.run_on(shard, [&target = rt_.at(shard), id = id_] { target.tracker().on_connection_closed(id); });
    }
    rt_.release();
  }

  Stream stream_;
  worker& w_;
  runtime& rt_;
  metrics::protocol kind_;
  swarm::ip_address client_;
  connection_id id_ = 0;
  ws::decoder decoder_;
  std::string pending_;  // received bytes not decoded yet: an unfinished frame, or a pause's rest
  std::size_t pending_head_ = 0;  // pending_ before this offset is decoded
  std::size_t discarded_ = 0;     // bytes dropped after a close
  std::unique_ptr<char[]> tls_buffer_;
  frame_queue queue_;
  std::size_t queued_bytes_ = 0;
  std::size_t in_flight_ = 0;  // bytes of the asynchronous write under way
  std::int64_t last_heard_ = 0;  // monotonic ms of the last bytes received
  std::int64_t close_started_ = 0;
  bool registered_ = false;
  bool open_ = true;           // the socket is not closed
  bool writing_ = false;       // an asynchronous write is under way
  bool flush_queued_ = false;  // on the worker's list of connections to write
  bool paused_ = false;        // the rate limit holds reading
  bool ping_sent_ = false;     // a keep-alive ping went out since the client was last heard
  bool closing_ = false;       // no more messages taken in or sent
  bool close_queued_ = false;  // our close frame is queued
  bool close_written_ = false;
  bool shut_down_ = false;     // our side of TCP is closed
  bool discarding_ = false;    // the stream past a close or a framing error is dropped
  unsigned errors_in_row_ = 0;
  double tokens_ = 0;  // set to a full bucket in run()
  std::chrono::steady_clock::time_point refilled_;
  std::unique_ptr<asio::steady_timer> throttle_;  // only for connections that hit the limit
  std::uint64_t shards_used_ = 0;  // bit i: this connection sent work to worker i's shard
  unsigned last_shard_ = 0;        // the shard of the last message routed (set in run())
  // Native protocol state.
  std::optional<nv::peer_id> peer_id_;  // set by hello
  bool native_client_ = false;
  std::uint32_t max_neighbors_ = 0;
  swarm::location where_;
  // Swarm key -> joins of it sent and not refused, for limits.max_swarms_per_connection.
  std::unordered_map<std::string, unsigned> joined_;
};

template <class Stream>
void start(Stream&& stream, worker& w, runtime& rt, const ws_handoff& h) {
  std::make_shared<ws_session<Stream>>(std::move(stream), w, rt, h.kind, h.client)->run(h);
}

}  // namespace

void start_ws_session(tcp::socket&& socket, worker& w, runtime& rt, ws_handoff h) { start(std::move(socket), w, rt, h); }
void start_ws_session(tls_stream&& stream, worker& w, runtime& rt, ws_handoff h) { start(std::move(stream), w, rt, h); }

}  // namespace swarmcoord::net
