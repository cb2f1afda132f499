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
#include "server/net/runtime.hpp"
#include "server/net/ws_session.hpp"

namespace swarmcoord::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using plain_stream = beast::tcp_stream;

namespace {

constexpr auto http_timeout = std::chrono::seconds(30);
constexpr std::string_view server_name = "swarmcoord";

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
    if (beast::websocket::is_upgrade(req)) return upgrade(std::move(req));
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
    if (!rt_->admit()) {
      ++worker_->net_counters().connections_rejected;
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
    // Bytes past the request are the client's first frames, sent without waiting for the 101.
    const auto early = buffer_.data();
    ws_handoff h{native ? metrics::protocol::native : metrics::protocol::webtorrent, client, std::move(*accept),
                 std::string_view(static_cast<const char*>(early.data()), early.size())};
    start_ws_session(ws_layer(std::move(stream_)), *worker_, *rt_, std::move(h));
  }

  // The layer under a WebSocket: for plain connections the bare socket (beast::tcp_stream's
  // timers cost about half a KiB per connection; a worker-wide sweep keeps the time instead),
  // for TLS connections the TLS stream.
  static tcp::socket ws_layer(plain_stream&& s) { return s.release_socket(); }
  static tls_stream ws_layer(tls_stream&& s) { return std::move(s); }

  void write(unsigned status, std::string type, std::string body, bool keep_alive, unsigned version,
             std::string_view websocket_version = {}) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(status), version);
    res->set(http::field::server, server_name);
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
};

swarm::ip_address remote_of(const tcp::socket& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? swarm::ip_address{} : to_domain(ep.address());
}

}  // namespace

void start_public_session(tcp::socket&& socket, worker& w, runtime& rt) {
  if (!rt.admit_http()) {
    ++w.net_counters().connections_rejected;
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
