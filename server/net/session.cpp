#include "server/net/session.hpp"

#include <deque>
#include <utility>
#include <optional>
#include <unordered_map>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <spdlog/spdlog.h>

#include "server/net/http_routes.hpp"
#include "server/net/ice.hpp"
#include "server/net/runtime.hpp"

namespace swarmcoord::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using plain_stream = beast::tcp_stream;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;
namespace wt = protocol::webtorrent;
namespace nv = protocol::native;

namespace {

constexpr auto http_timeout = std::chrono::seconds(30);
constexpr std::string_view server_name = "swarmcoord";
constexpr auto wt_index = static_cast<std::size_t>(metrics::protocol::webtorrent);
constexpr auto native_index = static_cast<std::size_t>(metrics::protocol::native);
// flat_buffer keeps its largest size. Most connections are idle most of the time, so the
// buffer is given back after every message (a malloc per message costs far less than 1-2 KiB
// per idle connection, times hundreds of thousands).
constexpr std::size_t read_buffer_keep = 0;
constexpr std::size_t first_read_bytes = 128;

// The write queue: a vector with a moving head, allocated only while messages wait (an
// empty std::deque already holds a 512-byte block), and given back once drained.
class outbound_queue {
 public:
  bool empty() const { return head_ == items_.size(); }
  outbound& front() { return items_[head_]; }
  void push_back(outbound&& m) { items_.push_back(std::move(m)); }
  void pop_front() {
    items_[head_++] = outbound{};
    if (head_ == items_.size()) clear();
  }
  void clear() {
    items_.clear();
    head_ = 0;
    if (items_.capacity() > 4) items_.shrink_to_fit();
  }

 private:
  std::vector<outbound> items_;
  std::size_t head_ = 0;
};

template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

swarm::ip_address to_domain(const asio::ip::address& a) {
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    return swarm::ip_address::v4(b[0], b[1], b[2], b[3]);
  }
  swarm::ip_address ip;
  auto b = a.to_v6().to_bytes();
  std::copy(b.begin(), b.end(), ip.bytes.begin());
  return ip;
}

void close_stream(plain_stream& s) {
  boost::system::error_code ec;
  s.socket().shutdown(tcp::socket::shutdown_send, ec);
  s.close();
}
void close_stream(tls_stream& s) { beast::get_lowest_layer(s).close(); }

// The layer under a WebSocket: for plain connections the bare socket, since beast::tcp_stream's
// timers cost about half a KiB per connection and work on every read and write, and the
// WebSocket stream keeps its own timeouts; for TLS connections the TLS stream as it was.
tcp::socket ws_layer(plain_stream&& s) { return s.release_socket(); }
tls_stream ws_layer(tls_stream&& s) { return std::move(s); }
template <class S>
using ws_layer_t = decltype(ws_layer(std::declval<S&&>()));

template <class Layer>
void close_lowest(Layer& s) {
  boost::system::error_code ec;
  auto& lowest = beast::get_lowest_layer(s);
  if constexpr (std::is_same_v<std::decay_t<decltype(lowest)>, tcp::socket>) lowest.close(ec);
  else lowest.close();
}

// ---------------------------------------------------------------- WebSocket session
template <class Stream>
class ws_session final : public connection, public std::enable_shared_from_this<ws_session<Stream>> {
 public:
  ws_session(Stream&& stream, worker& w, runtime& rt, metrics::protocol kind, swarm::ip_address client)
      : ws_(std::move(stream)), w_(w), rt_(rt), kind_(kind), client_(client) {
    if (kind_ == metrics::protocol::native) where_ = rt_.locator().locate(client_);
  }

  ~ws_session() override { finish(); }

  void run(http::request<http::string_body>&& req) {
    id_ = w_.register_connection(this);
    registered_ = true;
    last_shard_ = w_.index();
    tokens_ = rt_.cfg().server.max_messages_per_second;
    refilled_ = std::chrono::steady_clock::now();
    auto& c = w_.counters();
    ++c.connections[static_cast<std::size_t>(kind_)];
    ++c.connections_accepted;

    if constexpr (!std::is_same_v<Stream, tcp::socket>)
      beast::get_lowest_layer(ws_).expires_never();  // the websocket timeouts take over
    websocket::stream_base::timeout t{};
    t.handshake_timeout = std::chrono::seconds(30);
    t.idle_timeout = std::chrono::seconds(rt_.cfg().server.idle_timeout_s);
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::server, server_name);
    }));
    ws_.read_message_max(rt_.cfg().server.max_message_bytes);
    ws_.async_accept(req, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish();
      self->accepted_ = true;
      if (self->close_code_ && !self->writing_) return self->do_close();  // drained meanwhile
      self->do_read();
    });
  }

  void send(outbound m) override {
    if (closing_) return;
    auto& c = w_.counters();
    if (queued_bytes_ + m.payload->size() > rt_.cfg().server.max_write_queue_bytes) {
      // A client that does not read can't be allowed to grow our memory: drop it.
      ++c.slow_consumers_closed;
      if (spdlog::should_log(spdlog::level::debug))
        spdlog::debug("conn {} {}: write queue over {} bytes, disconnecting slow consumer", id_,
                    client_.to_string(), rt_.cfg().server.max_write_queue_bytes);
      abort();
      return;
    }
    // A join counted against limits.max_swarms_per_connection was refused by its shard. Only
    // when no other join of that swarm is in flight or done does the slot come back.
    if (!m.refused_join.empty())
      if (auto it = joined_.find(m.refused_join); it != joined_.end() && --it->second == 0) joined_.erase(it);
    ++c.sent[static_cast<std::size_t>(kind_)][m.type];
    queued_bytes_ += m.payload->size();
    queue_.push_back(std::move(m));
    if (!writing_) do_write();
  }

  void close_going_away() override { begin_close(websocket::close_code::going_away); }
  metrics::protocol kind() const override { return kind_; }
  connection_id id() const override { return id_; }

 private:
  // A pending read holds the buffer space it prepared for as long as the connection is idle:
  // the first read of a message prepares only a little, the rest of the message gets more.
  void do_read() {
    ws_.async_read_some(buffer_, first_read_bytes, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (!ec && !ws_.is_message_done()) {
      ws_.async_read_some(buffer_, 0, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
        self->on_read(ec);
      });
      return;
    }
    if (ec) {
      if (ec == websocket::error::message_too_big) {
        // Labelled after the decoder's reasons, as main.cpp lists them.
        const std::size_t too_big = kind_ == metrics::protocol::native ? nv::error_code_count : wt::error_reason_count;
        ++w_.counters().errors[static_cast<std::size_t>(kind_)][too_big];
        if (spdlog::should_log(spdlog::level::debug))
          spdlog::debug("conn {} {}: message over {} bytes, closed with 1009", id_, client_.to_string(),
                      rt_.cfg().server.max_message_bytes);
      } else if (ec != websocket::error::closed && ec != asio::error::operation_aborted) {
        if (spdlog::should_log(spdlog::level::debug)) spdlog::debug("conn {} {}: {}", id_, client_.to_string(), ec.message());
      }
      return finish();
    }
    const auto* data = static_cast<const char*>(buffer_.data().data());
    if (kind_ == metrics::protocol::native) on_native_message(std::string_view(data, buffer_.size()));
    else on_message(std::string_view(data, buffer_.size()));
    buffer_.consume(buffer_.size());
    if (buffer_.capacity() > read_buffer_keep) buffer_ = beast::flat_buffer{};
    if (closing_) return;
    if (const auto wait = take_token(); wait.count() > 0) return pause_reading(wait);
    do_read();
  }

  // Token bucket of server.max_messages_per_second, as deep as one second of it. Returns how
  // long to wait before the next read (zero: go on).
  std::chrono::nanoseconds take_token() {
    const double rate = rt_.cfg().server.max_messages_per_second;
    const auto now = std::chrono::steady_clock::now();
    tokens_ = std::min(rate, tokens_ + rate * std::chrono::duration<double>(now - refilled_).count());
    refilled_ = now;
    tokens_ -= 1;
    if (tokens_ >= 0) return {};
    return std::chrono::nanoseconds(static_cast<std::int64_t>(-tokens_ / rate * 1e9));
  }

  // Stops reading for a while: the client's further messages wait in its TCP send buffer,
  // which slows it down without costing anyone else (or us) anything.
  void pause_reading(std::chrono::nanoseconds wait) {
    ++w_.counters().reads_throttled;
    if (!throttle_) throttle_ = std::make_unique<asio::steady_timer>(w_.io());
    throttle_->expires_after(wait);
    throttle_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec && !self->closing_) self->do_read();
    });
  }

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

  // ---- native protocol ----
  void on_native_message(std::string_view text) {
    auto msg = nv::decode_client_message(text, {rt_.cfg().signal.max_bytes, 65536});
    ++w_.counters().received[native_index][msg.index()];
    if (auto* h = std::get_if<nv::hello>(&msg)) return on_hello(*h);
    if (!peer_id_) {
      // Nothing else is allowed before hello: the client is not speaking this protocol.
      if (auto* e = std::get_if<nv::error>(&msg)) native_error(std::move(*e));
      else native_error({nv::error_code::hello_required, "the first message must be hello",
                         std::string(nv::client_type_names[msg.index()])});
      return begin_close(websocket::close_code::policy_error);
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
        begin_close(websocket::close_code::policy_error);
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
        });
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
      begin_close(websocket::close_code::policy_error);
    }
  }

  void do_write() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(asio::buffer(*queue_.front().payload),
                    [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_write(ec); });
  }

  void on_write(beast::error_code ec) {
    queued_bytes_ -= queue_.front().payload->size();
    queue_.pop_front();
    if (ec) {
      writing_ = false;
      queue_.clear();
      queued_bytes_ = 0;
      return;  // the read side sees the failure too and finishes the session
    }
    if (!queue_.empty()) return do_write();
    writing_ = false;
    if (close_code_) do_close();
  }

  // Stops taking messages; the queue is flushed, then the close frame goes out.
  void begin_close(websocket::close_code code) {
    if (closing_) return;
    closing_ = true;
    close_code_ = code;
    // Before the handshake is written, the accept handler sends the close.
    if (accepted_ && !writing_) do_close();
  }

  void do_close() {
    ws_.async_close(*close_code_, [self = this->shared_from_this()](beast::error_code) {});
  }

  void abort() {
    closing_ = true;
    close_lowest(ws_);
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

  websocket::stream<Stream> ws_;
  beast::flat_buffer buffer_;
  worker& w_;
  runtime& rt_;
  metrics::protocol kind_;
  swarm::ip_address client_;
  connection_id id_ = 0;
  bool registered_ = false;
  bool accepted_ = false;
  bool writing_ = false;
  bool closing_ = false;
  std::optional<websocket::close_code> close_code_;
  outbound_queue queue_;
  std::size_t queued_bytes_ = 0;
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

// ---------------------------------------------------------------- HTTP session

// One admitted plain-HTTP connection on the public port; given back when the HTTP session
// ends, including when it turns into a WebSocket session (which counts on its own).
class http_slot {
 public:
  explicit http_slot(runtime* rt = nullptr) : rt_(rt) {}
  http_slot(http_slot&& o) noexcept : rt_(std::exchange(o.rt_, nullptr)) {}
  http_slot& operator=(http_slot&&) = delete;
  ~http_slot() {
    if (rt_) rt_->release_http();
  }

 private:
  runtime* rt_;
};
template <class Stream>
class http_session final : public std::enable_shared_from_this<http_session<Stream>> {
 public:
  http_session(Stream&& stream, http_routes& routes, worker* w, runtime* rt, swarm::ip_address peer,
               http_slot slot = http_slot{})
      : stream_(std::move(stream)), routes_(routes), worker_(w), rt_(rt), peer_(peer), slot_(std::move(slot)) {}

  void run() { do_read(); }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(8192);
    parser_->body_limit(4096);
    beast::get_lowest_layer(stream_).expires_after(http_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) return close_stream(stream_);
    auto req = parser_->release();
    if (websocket::is_upgrade(req)) return upgrade(std::move(req));
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    routes_.handle(path_of(req.target()), stream_.get_executor(),
                   [self = this->shared_from_this(), keep_alive, version](unsigned status, std::string type,
                                                                          std::string body) {
                     self->write(status, std::move(type), std::move(body), keep_alive, version);
                   });
  }

  void upgrade(http::request<http::string_body>&& req) {
    const auto path = path_of(req.target());
    if (!worker_) return write(404, "text/plain", "not found\n", false, req.version());
    const bool native = path == "/v1/ws";
    if (!native && path != "/" && path != "/announce") return write(404, "text/plain", "not found\n", false, req.version());
    if (rt_->draining()) return write(503, "text/plain", "draining\n", false, req.version());
    if (!rt_->admit()) {
      ++worker_->counters().connections_rejected;
      return write(503, "text/plain", "too many connections\n", false, req.version());
    }
    // A proxy may append its own X-Forwarded-For line after one the client sent: join them all.
    std::string forwarded_for;
    for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) {
      if (!forwarded_for.empty()) forwarded_for += ',';
      forwarded_for += it->value();
    }
    auto client = swarm::client_address(peer_, forwarded_for, req[http::field::forwarded],
                                        rt_->cfg().server.trusted_proxies);
    std::make_shared<ws_session<ws_layer_t<Stream>>>(ws_layer(std::move(stream_)), *worker_, *rt_,
                                         native ? metrics::protocol::native : metrics::protocol::webtorrent, client)
        ->run(std::move(req));
  }

  void write(unsigned status, std::string type, std::string body, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version);
    res->set(http::field::server, server_name);
    res->set(http::field::content_type, type);
    res->set(http::field::cache_control, "no-store");
    res->keep_alive(keep_alive);
    res->body() = std::move(body);
    res->prepare_payload();
    http::async_write(stream_, *res, [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
      if (ec || !res->keep_alive()) return close_stream(self->stream_);
      self->do_read();
    });
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http_routes& routes_;
  worker* worker_;
  runtime* rt_;
  swarm::ip_address peer_;
  http_slot slot_;
};

swarm::ip_address remote_of(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? swarm::ip_address{} : to_domain(ep.address());
}

}  // namespace

void start_public_session(tcp::socket&& socket, worker& w, runtime& rt) {
  if (!rt.admit_http()) {
    ++w.counters().connections_rejected;
    boost::system::error_code ec;
    socket.close(ec);
    return;
  }
  http_slot slot(&rt);
  const auto peer = remote_of(socket);
  if (auto* tls = rt.tls()) {
    auto stream = std::make_shared<tls_stream>(std::move(socket), *tls);
    beast::get_lowest_layer(*stream).expires_after(http_timeout);
    stream->async_handshake(asio::ssl::stream_base::server,
                            [stream, &w, &rt, peer, slot = std::make_shared<http_slot>(std::move(slot))](beast::error_code ec) {
                              if (ec) return;  // scanners and plain-HTTP clients: nothing worth a log line
                              std::make_shared<http_session<tls_stream>>(std::move(*stream), rt.routes(), &w, &rt, peer,
                                                                         std::move(*slot))
                                  ->run();
                            });
    return;
  }
  std::make_shared<http_session<plain_stream>>(plain_stream(std::move(socket)), rt.routes(), &w, &rt, peer,
                                               std::move(slot))
      ->run();
}

void start_admin_session(tcp::socket&& socket, http_routes& routes) {
  const auto peer = remote_of(socket);
  std::make_shared<http_session<plain_stream>>(plain_stream(std::move(socket)), routes, nullptr, nullptr, peer)->run();
}

}  // namespace swarmcoord::net
