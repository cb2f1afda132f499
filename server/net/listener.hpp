#pragma once
// Accept loop on one acceptor; every accepted socket goes to a session factory. Lives on the
// acceptor's executor; stop() must be called there.
#include <functional>
#include <memory>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

namespace swarmcoord::net {

class listener : public std::enable_shared_from_this<listener> {
 public:
  using factory = std::function<void(boost::asio::ip::tcp::socket&&)>;

  listener(boost::asio::ip::tcp::acceptor&& acceptor, factory on_accept);
  void start();
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  // Opens, configures and binds an acceptor; reuse_port lets every worker bind the same port.
  static boost::asio::ip::tcp::acceptor bind(boost::asio::any_io_executor ex,
                                             const boost::asio::ip::tcp::endpoint& at, bool reuse_port);

 private:
  void do_accept();
  void admit(boost::asio::ip::tcp::socket socket);
  boost::asio::ip::tcp::acceptor acceptor_;
  factory on_accept_;
  boost::asio::steady_timer backoff_;
};

}  // namespace swarmcoord::net
