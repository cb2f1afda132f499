#include "server/net/listener.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <spdlog/spdlog.h>

#include <boost/asio/socket_base.hpp>

namespace swarmcoord::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr int accept_batch = 32;
}

listener::listener(tcp::acceptor&& acceptor, factory on_accept, observer watch, when_out_of_descriptors policy)
    : acceptor_(std::move(acceptor)), on_accept_(std::move(on_accept)), watch_(std::move(watch)), policy_(policy),
      backoff_(acceptor_.get_executor()) {
  take_reserve();
}

listener::~listener() {
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

void listener::take_reserve() {
  if (reserve_fd_ < 0) reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}

// Accepts one waiting connection on the reserved descriptor. False when there was none to
// give up, or nothing waiting.
bool listener::use_reserve() {
  if (reserve_fd_ < 0) return false;
  ::close(reserve_fd_);
  reserve_fd_ = -1;
  const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    take_reserve();
    return false;
  }
  if (policy_ == when_out_of_descriptors::serve) {
    boost::system::error_code ec;
    tcp::socket socket(acceptor_.get_executor());
    socket.assign(acceptor_.local_endpoint().protocol(), fd, ec);
    if (!ec) {
      admit(std::move(socket));
      take_reserve();  // may fail while descriptors are short: tried again on the next accept
      return true;
    }
  }
  ::close(fd);
  take_reserve();
  if (watch_.shed) watch_.shed();
  return true;
}

bool listener::on_accept_error(const boost::system::error_code& ec) {
  const int err = ec.value();
  if (watch_.accept_failed) watch_.accept_failed(err);
  if (err == EMFILE || err == ENFILE) {
    // Once a minute at most: the metric has every failure.
    static std::atomic<std::int64_t> last_warning{0};
    const auto now = std::chrono::steady_clock::now().time_since_epoch() / std::chrono::seconds(1);
    auto last = last_warning.load(std::memory_order_relaxed);
    if ((last == 0 || now - last >= 60) && last_warning.compare_exchange_strong(last, now))
      spdlog::warn("accept on {}: {}; {} (raise the descriptor limit: ulimit -n / LimitNOFILE)",
                   acceptor_.local_endpoint().port(), ec.message(),
                   policy_ == when_out_of_descriptors::serve ? "serving on the reserved descriptor"
                                                             : "closing new connections at once");
    return use_reserve();
  }
  spdlog::debug("accept failed: {}", ec.message());
  return false;
}

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
      // Out of descriptors, the waiting connection is taken on the reserve and the loop goes
      // on; otherwise (or with no reserve left) it retries after a pause instead of spinning.
      if (!self->on_accept_error(ec)) {
        self->backoff_.expires_after(std::chrono::milliseconds(50));
        self->backoff_.async_wait([self](boost::system::error_code) {
          if (self->acceptor_.is_open()) self->do_accept();
        });
        return;
      }
    } else {
      self->take_reserve();
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
