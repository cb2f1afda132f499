#include "server/net/listener.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <vector>

#include <spdlog/spdlog.h>

#include <boost/asio/socket_base.hpp>

namespace swarmcoord::net {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
constexpr int accept_batch = 32;

// Every listener's reserve, and the lock that every accept and every reserve taken or given
// up happens under. Without it, a descriptor that one listener frees to accept on can go to
// another thread's accept meanwhile: the first is then left with neither (its clients wait in
// its backlog, its own reserve gone for good), and the admin listener's reserve, spent on a
// connection it serves, would go to the public port the moment that connection ends.
struct reserves {
  std::mutex m;
  std::vector<int*> slots;  // each listener's reserve_fd_, -1 while spent
};
reserves& all_reserves() {
  static reserves r;
  return r;
}

// Under the lock, before each pass of accepts: a reserve spent since is the first use of a
// free descriptor (may fail while they are short: tried again on the next pass).
void refill(reserves& r) {
  for (int* fd : r.slots)
    if (*fd < 0) *fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}
}  // namespace

listener::listener(tcp::acceptor&& acceptor, factory on_accept, observer watch, when_out_of_descriptors policy)
    : acceptor_(std::move(acceptor)), on_accept_(std::move(on_accept)), watch_(std::move(watch)), policy_(policy),
      backoff_(acceptor_.get_executor()) {
  auto& r = all_reserves();
  std::lock_guard lock(r.m);
  r.slots.push_back(&reserve_fd_);
  refill(r);
}

listener::~listener() {
  auto& r = all_reserves();
  std::lock_guard lock(r.m);
  std::erase(r.slots, &reserve_fd_);
  if (reserve_fd_ >= 0) ::close(reserve_fd_);
}

// Accepts one waiting connection on the reserved descriptor. False when there was none to
// give up, or nothing waiting.
bool listener::use_reserve(std::vector<tcp::socket>& serve) {
  if (reserve_fd_ < 0) return false;
  ::close(reserve_fd_);
  reserve_fd_ = -1;
  const int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) {
    reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return false;
  }
  if (policy_ == when_out_of_descriptors::serve) {
    boost::system::error_code ec;
    tcp::socket socket(acceptor_.get_executor());
    socket.assign(acceptor_.local_endpoint().protocol(), fd, ec);
    if (!ec) {
      serve.push_back(std::move(socket));  // on the reserve's descriptor until it ends
      return true;
    }
  }
  ::close(fd);
  reserve_fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (watch_.shed) watch_.shed();
  return true;
}

bool listener::on_accept_error(const boost::system::error_code& ec, std::vector<tcp::socket>& serve) {
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
    return use_reserve(serve);
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
  // accept_waiting() accepts synchronously, which must never block.
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
  acceptor_.async_wait(tcp::acceptor::wait_read, [self = shared_from_this()](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
    if (self->accept_waiting()) return self->do_accept();
    // Failed otherwise than for descriptors (or with no reserve left): retry after a pause
    // instead of spinning.
    self->backoff_.expires_after(std::chrono::milliseconds(50));
    self->backoff_.async_wait([self](boost::system::error_code) {
      if (self->acceptor_.is_open()) self->do_accept();
    });
  });
}

// Takes what waits in the backlog, up to a batch: one accept per pass through a busy worker's
// queue of handlers lets new clients in far too slowly (a reconnect storm, say). The accepts
// run under the lock of every listener's reserve (see all_reserves); the sessions start after.
bool listener::accept_waiting() {
  std::vector<tcp::socket> accepted;
  bool ok = true;
  {
    auto& r = all_reserves();
    std::lock_guard lock(r.m);
    refill(r);
    for (int i = 0; i < accept_batch; ++i) {
      tcp::socket socket(acceptor_.get_executor());
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (!ec) {
        accepted.push_back(std::move(socket));
        continue;
      }
      if (ec == asio::error::would_block || ec == asio::error::try_again) break;  // drained
      // Out of descriptors, the waiting connection is taken on the reserve and the pass goes on.
      if (!on_accept_error(ec, accepted)) {
        ok = false;
        break;
      }
    }
  }
  for (auto& socket : accepted) admit(std::move(socket));
  return ok;
}

}  // namespace swarmcoord::net
