#pragma once
// Accept loop on one acceptor; every accepted socket goes to a session factory. Lives on the
// acceptor's executor; stop() must be called there.
//
// Out of file descriptors, accept() fails while the client waits in the kernel's backlog,
// and a retry loop would either spin or leave everyone hanging. So each listener keeps one
// descriptor in reserve: on EMFILE/ENFILE it gives it up to accept the waiting connection,
// then either closes it at once (shedding: the client learns now, not after a timeout) or,
// for the admin listener, serves it, so that /metrics still answers when the public port is
// swamped. The reserve is taken again as soon as a descriptor is free.
//
// Descriptors are the process's, shared by every thread: every listener's accepts and
// reserves go under one lock (see listener.cpp), so that a reserve given up is the very
// descriptor the accept gets, and a reserve spent serving is taken again before any other
// accept can have the descriptor freed when that connection ends.
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace swarmcoord::net {

class listener : public std::enable_shared_from_this<listener> {
 public:
  using factory = std::function<void(boost::asio::ip::tcp::socket&&)>;
  // Told of each failed accept (errno) and of each connection shed.
  struct observer {
    std::function<void(int error)> accept_failed;
    std::function<void()> shed;
  };
  enum class when_out_of_descriptors { shed, serve };

  listener(boost::asio::ip::tcp::acceptor&& acceptor, factory on_accept, observer watch = {},
           when_out_of_descriptors policy = when_out_of_descriptors::shed);
  ~listener();
  void start();
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  // Opens, configures and binds an acceptor; reuse_port lets every worker bind the same port.
  static boost::asio::ip::tcp::acceptor bind(boost::asio::any_io_executor ex,
                                             const boost::asio::ip::tcp::endpoint& at, bool reuse_port);

 private:
  // Waits for the acceptor to be readable (again at once when a batch left some waiting:
  // the reactor re-arms the edge on every wait), then accept_waiting().
  void do_accept();
  // Accepts what waits, up to a batch, and starts their sessions; false when an accept
  // failed in a way that wants a pause before the next try.
  bool accept_waiting();
  void admit(boost::asio::ip::tcp::socket socket);
  // Under the accept lock. Counts and reports a failed accept; true when it took the waiting
  // connection on the reserve (shed, or added to `serve`): accept again at once.
  bool on_accept_error(const boost::system::error_code& ec, std::vector<boost::asio::ip::tcp::socket>& serve);
  bool use_reserve(std::vector<boost::asio::ip::tcp::socket>& serve);
  boost::asio::ip::tcp::acceptor acceptor_;
  factory on_accept_;
  observer watch_;
  when_out_of_descriptors policy_;
  boost::asio::steady_timer backoff_;
  int reserve_fd_ = -1;  // under the accept lock
};

}  // namespace swarmcoord::net
