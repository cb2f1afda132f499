#pragma once
// Plain HTTP endpoints. Public listener: /healthz, /readyz. Admin listener: those plus
// /metrics and /stats, whose figures are gathered from every worker. A route answers through
// `respond`, possibly later, always on the session's executor.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <boost/asio/any_io_executor.hpp>

namespace swarmcoord::metrics {
class exporter;
}

namespace swarmcoord::net {

class runtime;

using respond_fn = std::function<void(unsigned status, std::string content_type, std::string body)>;

class http_routes {
 public:
  virtual ~http_routes() = default;
  virtual void handle(std::string_view path, boost::asio::any_io_executor session_executor,
                      respond_fn respond) = 0;
  // Whether a request for path, with this Authorization header value, may be answered.
  virtual bool authorized(std::string_view path, std::string_view authorization) const { return true; }
};

class public_routes final : public http_routes {
 public:
  explicit public_routes(runtime& rt) : rt_(rt) {}
  void handle(std::string_view path, boost::asio::any_io_executor, respond_fn respond) override;

 private:
  runtime& rt_;
};

class admin_routes final : public http_routes {
 public:
  admin_routes(runtime& rt, metrics::exporter& exporter, std::string version);
  void handle(std::string_view path, boost::asio::any_io_executor session_executor,
              respond_fn respond) override;
  // admin.token, when set, guards everything but the health checks.
  bool authorized(std::string_view path, std::string_view authorization) const override;

  // admin.max_connections: a connection takes a slot (false: close it), and gives it back
  // when it ends. The count outlives this object: sessions may end after it, at shutdown.
  std::shared_ptr<std::size_t> take_slot();

 private:
  std::shared_ptr<std::size_t> open_ = std::make_shared<std::size_t>(0);
  runtime& rt_;
  metrics::exporter& exporter_;  // used only on the admin thread
  std::string version_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// Strips the query string from a request target.
std::string_view path_of(std::string_view target);

}  // namespace swarmcoord::net
