#include "server/net/listener.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/socket_base.hpp>

namespace swarmcoord::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr int accept_batch = 32;
}

listener::listener(tcp::acceptor&& acceptor, factory on_accept)
    : acceptor_(std::move(acceptor)), on_accept_(std::move(on_accept)), backoff_(acceptor_.get_executor()) {}

tcp::acceptor listener::bind(asio::any_io_executor ex, const tcp::endpoint& at, bool reuse_port) {
  tcp::acceptor acceptor(ex);
  acceptor.open(at.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  if (reuse_port) {
    int one = 1;
    ::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  }
  acceptor.bind(at);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor;
}

tcp::endpoint listener::local_endpoint() const { return acceptor_.local_endpoint(); }

void listener::start() {
  // The batch in do_accept() accepts synchronously, which must never block.
  acceptor_.non_blocking(true);
  do_accept();
}

void listener::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void listener::admit(tcp::socket socket) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  on_accept_(std::move(socket));
}

void listener::do_accept() {
  acceptor_.async_accept([self = shared_from_this()](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and friends: usually transient. Retry after a pause instead of spinning, and
      // log at debug only, since a line per failure would flood.
      spdlog::debug("accept failed: {}", ec.message());
      self->backoff_.expires_after(std::chrono::milliseconds(50));
      self->backoff_.async_wait([self](boost::system::error_code) {
        if (self->acceptor_.is_open()) self->do_accept();
      });
      return;
    } else {
      self->admit(std::move(socket));
      // Take what else waits in the backlog now: one accept per pass through a busy worker's
      // queue of handlers lets new clients in far too slowly (a reconnect storm, say).
      for (int i = 0; i < accept_batch; ++i) {
        tcp::socket more(self->acceptor_.get_executor());
        boost::system::error_code more_ec;
        self->acceptor_.accept(more, more_ec);
        if (more_ec) break;  // would_block: the backlog is empty
        self->admit(std::move(more));
      }
    }
    self->do_accept();
  });
}

}  // namespace swarmcoord::net
