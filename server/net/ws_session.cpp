#include "server/net/ws_session.hpp"

#include "server/net/runtime.hpp"
#include "server/net/ws_transport.hpp"
#include "server/sessions/native_session.hpp"
#include "server/sessions/webtorrent_session.hpp"

namespace swarmcoord::net {
namespace {

std::unique_ptr<sessions::protocol_session> make_session(sessions::transport& t, connection_id id, worker& w,
                                                         runtime& rt, ws_handoff& h) {
  const auto& cfg = rt.cfg();
  sessions::admitted admitted{std::move(h.token), &rt.address_limits(), &w.limit_counters()};
  if (h.kind == metrics::protocol::native)
    return std::make_unique<sessions::native_session>(t, w.router(), w.session_counters().native, cfg, id, h.client,
                                                      rt.locator().locate(h.client), [&w] { return w.new_peer_id(); },
                                                      std::move(admitted));
  return std::make_unique<sessions::webtorrent_session>(
      t, w.router(), w.session_counters().webtorrent, id, h.client,
      sessions::webtorrent_session::limits{cfg.server.max_protocol_errors, cfg.limits.max_peers_per_connection,
                                           cfg.tracker.max_scrape_all},
      std::move(admitted));
}

template <class Stream>
void start(Stream&& stream, worker& w, runtime& rt, ws_handoff& h) {
  auto t = std::make_shared<ws_transport<Stream>>(std::move(stream), w, rt, h.kind, h.client);
  t->run(make_session(*t, t->id(), w, rt, h), h.accept_key, h.early_bytes);
}

}  // namespace

void start_ws_session(boost::asio::ip::tcp::socket&& socket, worker& w, runtime& rt, ws_handoff h) { start(std::move(socket), w, rt, h); }
void start_ws_session(tls_stream&& stream, worker& w, runtime& rt, ws_handoff h) { start(std::move(stream), w, rt, h); }

}  // namespace swarmcoord::net
