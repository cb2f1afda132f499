#include "server/net/listener.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/socket_base.hpp>

namespace swarmcoord::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

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

void listener::start() { do_accept(); }

void listener::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
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
      boost::system::error_code opt_ec;
      socket.set_option(tcp::no_delay(true), opt_ec);
      self->on_accept_(std::move(socket));
    }
    self->do_accept();
  });
}

}  // namespace swarmcoord::net
