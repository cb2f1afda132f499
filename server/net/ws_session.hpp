#pragma once
// WebSocket sessions: the WebTorrent protocol on / and /announce, the native protocol on
// /v1/ws. The HTTP session validates the upgrade request and hands over the stream, the
// Sec-WebSocket-Accept value and any bytes the client sent after its request; a session is
// then a transport (ws_transport.hpp) and the protocol session for the path
// (sessions/webtorrent_session.hpp, sessions/native_session.hpp).
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "server/metrics/counters.hpp"
#include "server/sessions/admission.hpp"
#include "server/swarm/address.hpp"

namespace swarmcoord::net {

class worker;
class runtime;

using tls_stream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

struct ws_handoff {
  metrics::protocol kind;
  swarm::ip_address client;  // after trusted proxies' headers
  std::string accept_key;    // for the 101 response
  std::string_view early_bytes;  // read past the request: the first frames, if the client hurried
  sessions::grant token;         // what the connection's token allows (empty: no token)
};

void start_ws_session(boost::asio::ip::tcp::socket&& socket, worker& w, runtime& rt, ws_handoff h);
void start_ws_session(tls_stream&& stream, worker& w, runtime& rt, ws_handoff h);

}  // namespace swarmcoord::net
