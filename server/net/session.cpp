#include "server/net/session.hpp"

#include <utility>
#include <optional>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <spdlog/spdlog.h>

#include "protocol/websocket.hpp"
#include "server/net/http_routes.hpp"
#include "server/net/refusal_log.hpp"
#include "server/net/runtime.hpp"
#include "server/net/ws_session.hpp"

namespace swarmcoord::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using plain_stream = beast::tcp_stream;

namespace {

constexpr std::string_view server_name = "swarmcoord";
// Admin connections (Prometheus, probes) are few and on a private network.
constexpr auto admin_header_timeout = std::chrono::seconds(10);

std::chrono::seconds header_timeout(const runtime* rt) {
  return rt ? std::chrono::seconds(rt->cfg().server.header_timeout_s) : admin_header_timeout;
}

// One line every 10 s at most per kind of refusal (see refusal_log.hpp).
refusal_log& log_of(metrics::limit l) {
  static refusal_log logs[metrics::limit_count] = {
      refusal_log("connections over limits.http_sessions_per_address"),
      refusal_log("WebSocket upgrades over limits.connections_per_address"),
      refusal_log("connections over limits.connects_per_second_per_address"),
      refusal_log("joins/announces over limits.swarms_per_address"),
  };
  return logs[static_cast<std::size_t>(l)];
}
refusal_log& log_of(metrics::upgrade_refusal r) {
  static refusal_log logs[metrics::upgrade_refusal_count] = {
      refusal_log("upgrades from an Origin not in server.allowed_origins"),
      refusal_log("upgrades without an Origin (server.allow_missing_origin = false)"),
      refusal_log("upgrades without a token (auth.required = true)"),
      refusal_log("upgrades with an invalid token"),
      refusal_log("upgrades with an expired token"),
  };
  return logs[static_cast<std::size_t>(r)];
}

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

// ---------------------------------------------------------------- HTTP session

// One admitted plain-HTTP connection on the public port, under server.max_http_sessions and
// (unless it came from a trusted proxy) its address's limits.http_sessions_per_address; given
// back when the HTTP session ends, including when it turns into a WebSocket session (which
// counts on its own).
class http_slot {
 public:
  http_slot() = default;
  http_slot(runtime* rt, std::optional<swarm::ip_address> per_address) : rt_(rt), per_address_(per_address) {}
  http_slot(http_slot&& o) noexcept : rt_(std::exchange(o.rt_, nullptr)), per_address_(o.per_address_) {}
  http_slot& operator=(http_slot&&) = delete;
  ~http_slot() {
    if (!rt_) return;
    rt_->release_http();
    if (per_address_) rt_->address_limits().end_http(*per_address_);
  }

 private:
  runtime* rt_ = nullptr;
  std::optional<swarm::ip_address> per_address_;
};
template <class Stream>
class http_session final : public std::enable_shared_from_this<http_session<Stream>> {
 public:
  http_session(Stream&& stream, http_routes& routes, worker* w, runtime* rt, swarm::ip_address peer,
               http_slot slot = http_slot{}, std::shared_ptr<void> admin_slot = {})
      : stream_(std::move(stream)), routes_(routes), worker_(w), rt_(rt), peer_(peer), slot_(std::move(slot)),
        admin_slot_(std::move(admin_slot)) {}

  void run() { do_read(); }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(8192);
    parser_->body_limit(4096);
    beast::get_lowest_layer(stream_).expires_after(header_timeout(rt_));
    http::async_read(stream_, buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) return close_stream(stream_);
    auto req = parser_->release();
    if (beast::websocket::is_upgrade(req)) return upgrade(std::move(req));
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    if (!routes_.authorized(path_of(req.target()), req[http::field::authorization]))
      return write(401, "text/plain", "unauthorized\n", keep_alive, version, {}, false, "Bearer");
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
    // RFC 6455 4.2.1: version 13 only (426 names it), and a key of 16 bytes in base64.
    if (req[http::field::sec_websocket_version] != "13")
      return write(426, "text/plain", "unsupported WebSocket version\n", false, req.version(), "13");
    // 4.2.1 also wants a Host, and (11.3.1) exactly one key.
    if (req.count(http::field::host) != 1) return write(400, "text/plain", "one Host header required\n", false, req.version());
    auto accept = req.count(http::field::sec_websocket_key) == 1
                      ? protocol::websocket::accept_key(req[http::field::sec_websocket_key])
                      : std::nullopt;
    if (!accept) return write(400, "text/plain", "invalid Sec-WebSocket-Key\n", false, req.version());
    if (rt_->draining()) return write(503, "text/plain", "draining\n", false, req.version());
    // A proxy may append its own X-Forwarded-For line after one the client sent: join them all.
    std::string forwarded_for;
    for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) {
      if (!forwarded_for.empty()) forwarded_for += ',';
      forwarded_for += it->value();
    }
    const auto& trusted = rt_->cfg().server.trusted_proxies;
    auto client = swarm::client_address(peer_, forwarded_for, req[http::field::forwarded], trusted);
    auto token = admit_request(req, client);
    if (!token) return;  // answered
    // A proxied client's connections were not counted at accept (the proxy's were not
    // either): its rate is charged here, under its own address.
    if (swarm::in_any(trusted, peer_) && !rt_->address_limits().take_connect_token(client, monotonic_ms()))
      return refuse(metrics::limit::connect_rate_per_address, client, req.version());
    switch (rt_->admit(client)) {
      case runtime::admit_result::admitted: break;
      case runtime::admit_result::server_full:
        ++worker_->net_counters().connections_rejected;
        return write(503, "text/plain", "too many connections\n", false, req.version());
      case runtime::admit_result::address_full:
        return refuse(metrics::limit::connections_per_address, client, req.version());
    }
    if (spdlog::should_log(spdlog::level::debug) && !token->subject.empty())
      spdlog::debug("{}: upgrade with a token for {}", client.to_string(), token->subject);
    // Bytes past the request are the client's first frames, sent without waiting for the 101.
    const auto early = buffer_.data();
    ws_handoff h{native ? metrics::protocol::native : metrics::protocol::webtorrent, client, std::move(*accept),
                 std::string_view(static_cast<const char*>(early.data()), early.size()), std::move(*token)};
    start_ws_session(ws_layer(std::move(stream_)), *worker_, *rt_, std::move(h));
  }

  // server.allowed_origins and auth tokens: the grant of the connection's token, or nothing
  // when the upgrade was refused (and answered).
  std::optional<sessions::grant> admit_request(const http::request<http::string_body>& req,
                                               const swarm::ip_address& client) {
    const auto& a = rt_->admission();
    std::optional<metrics::upgrade_refusal> refusal;
    if (auto it = req.find(http::field::origin); it != req.end()) refusal = a.check_origin(it->value());
    else refusal = a.check_origin(std::nullopt);
    if (!refusal) {
      const auto unix_now = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
      auto checked = a.check_token(sessions::query_parameter(req.target(), "token"), unix_now);
      if (auto* g = std::get_if<sessions::grant>(&checked)) return std::move(*g);
      refusal = std::get<metrics::upgrade_refusal>(checked);
    }
    ++worker_->net_counters().upgrades_refused[static_cast<std::size_t>(*refusal)];
    log_of(*refusal).note(client);
    using metrics::upgrade_refusal;
    switch (*refusal) {
      case upgrade_refusal::origin: write(403, "text/plain", "origin not allowed\n", false, req.version()); break;
      case upgrade_refusal::missing_origin: write(403, "text/plain", "Origin header required\n", false, req.version()); break;
      case upgrade_refusal::token_missing: write(401, "text/plain", "token required\n", false, req.version()); break;
      case upgrade_refusal::token_invalid: write(401, "text/plain", "invalid token\n", false, req.version()); break;
      case upgrade_refusal::token_expired: write(401, "text/plain", "token expired\n", false, req.version()); break;
    }
    return std::nullopt;
  }

  // HTTP 429 for a per-address limit, counted and logged (at most a line every 10 s).
  void refuse(metrics::limit l, const swarm::ip_address& client, unsigned version) {
    worker_->limit_counters().count(l);
    log_of(l).note(client);
    write(429, "text/plain", "too many connections from this address\n", false, version, {}, true);
  }

  // The layer under a WebSocket: for plain connections the bare socket (beast::tcp_stream's
  // timers cost about half a KiB per connection; a worker-wide sweep keeps the time instead),
  // for TLS connections the TLS stream.
  static tcp::socket ws_layer(plain_stream&& s) { return s.release_socket(); }
  static tls_stream ws_layer(tls_stream&& s) { return std::move(s); }

  void write(unsigned status, std::string type, std::string body, bool keep_alive, unsigned version,
             std::string_view websocket_version = {}, bool retry_later = false,
             std::string_view authenticate = {}) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version);
    res->set(http::field::server, server_name);
    if (retry_later) res->set(http::field::retry_after, "1");
    if (!authenticate.empty()) res->set(http::field::www_authenticate, authenticate);
    if (!websocket_version.empty()) res->set(http::field::sec_websocket_version, websocket_version);
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
  std::shared_ptr<void> admin_slot_;  // admin.max_connections
};

swarm::ip_address remote_of(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? swarm::ip_address{} : to_domain(ep.address());
}

}  // namespace

// A connection refused before its request was read: a plain-HTTP client is told why at once
// (the write can't block: nothing else was sent on the socket), a TLS one just closed.
void refuse_at_accept(tcp::socket& socket, bool tls) {
  boost::system::error_code ec;
  if (!tls) {
    static constexpr std::string_view too_many =
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    socket.non_blocking(true, ec);
    socket.write_some(asio::buffer(too_many), ec);
  }
  socket.close(ec);
}

void start_public_session(tcp::socket&& socket, worker& w, runtime& rt) {
  const auto peer = remote_of(socket);
  // A trusted proxy carries everyone's connections: its clients are counted by their
  // forwarded address at the upgrade instead.
  const bool proxied = swarm::in_any(rt.cfg().server.trusted_proxies, peer);
  if (!proxied) {
    if (auto refused = rt.address_limits().accept(peer, monotonic_ms())) {
      w.limit_counters().count(*refused);
      log_of(*refused).note(peer);
      return refuse_at_accept(socket, rt.tls() != nullptr);
    }
  }
  if (!rt.admit_http()) {
    if (!proxied) rt.address_limits().end_http(peer);
    ++w.net_counters().connections_rejected;
    boost::system::error_code ec;
    socket.close(ec);
    return;
  }
  http_slot slot(&rt, proxied ? std::nullopt : std::optional(peer));
  if (auto* tls = rt.tls()) {
    auto stream = std::make_shared<tls_stream>(std::move(socket), *tls);
    beast::get_lowest_layer(*stream).expires_after(header_timeout(&rt));
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

void start_admin_session(tcp::socket&& socket, admin_routes& routes) {
  auto slot = routes.take_slot();
  if (!slot) {
    static refusal_log log("admin connections over admin.max_connections");
    log.note(remote_of(socket));
    boost::system::error_code ec;
    socket.close(ec);
    return;
  }
  const auto peer = remote_of(socket);
  std::make_shared<http_session<plain_stream>>(plain_stream(std::move(socket)), routes, nullptr, nullptr, peer,
                                               http_slot{}, std::move(slot))
      ->run();
}

}  // namespace swarmcoord::net
