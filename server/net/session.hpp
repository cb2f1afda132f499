#pragma once
// Entry points for accepted sockets. A public session speaks HTTP (health, readiness) until a
// WebSocket upgrade on /, /announce (WebTorrent) or /v1/ws (native) hands the stream to a
// WebSocket session on the same worker. Admin sessions speak HTTP only.
#include <boost/asio/ip/tcp.hpp>

namespace swarmcoord::net {

class worker;
class runtime;
class admin_routes;

// Runs on the worker's thread (the socket belongs to its io_context).
void start_public_session(boost::asio::ip::tcp::socket&& socket, worker& w, runtime& rt);
// Under admin.max_connections: over it, the connection is closed at once.
void start_admin_session(boost::asio::ip::tcp::socket&& socket, admin_routes& routes);

}  // namespace swarmcoord::net
