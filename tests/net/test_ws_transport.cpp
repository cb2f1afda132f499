// The WebSocket transport (net/ws_transport) over a real loopback socket: messages in and
// out, the close handshake started by either side, framing errors, size and write-queue
// limits, pings. The worker's io_context runs on the test thread, a round at a time, until
// what a test waits for happened or a deadline passed.
#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include "../common/ws_client_frame.hpp"
#include "server/config/config.hpp"
#include "server/net/runtime.hpp"
#include "server/net/ws_transport.hpp"

namespace {

namespace asio = boost::asio;
namespace net = swarmcoord::net;
namespace ss = swarmcoord::sessions;
namespace ws = swarmcoord::protocol::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::size_t webtorrent = swarmcoord::metrics::index_of(swarmcoord::metrics::protocol::webtorrent);

// What the connection's protocol session saw; it outlives the session (owned by the transport).
struct session_log {
  std::vector<std::string> messages;
  unsigned closed = 0;
  ss::transport* transport = nullptr;  // while the session lives
  // Run on every message, to answer through the transport.
  std::function<void(ss::transport&, std::string_view)> react;
};

class fake_session final : public ss::protocol_session {
 public:
  fake_session(ss::transport& t, session_log& log) : log_(log) { log_.transport = &t; }
  void on_message(std::string_view text) override {
    log_.messages.emplace_back(text);
    if (log_.react) log_.react(*log_.transport, text);
  }
  void on_home_message(ss::home_message&&) override {}
  void on_closed() override {
    ++log_.closed;
    log_.transport = nullptr;
  }

 private:
  session_log& log_;
};

std::shared_ptr<const std::string> text(std::string s) { return std::make_shared<const std::string>(std::move(s)); }

// A final client frame of opcode `op`, masked unless told otherwise.
std::string client_frame(ws::opcode op, std::string_view payload, bool masked = true) {
  return swarmcoord::test::client_frame(static_cast<std::uint8_t>(0x80 | static_cast<unsigned>(op)), payload, masked);
}
std::string client_close(std::uint16_t code, std::string_view reason = {}) {
  std::string payload{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  payload += reason;
  return client_frame(ws::opcode::close, payload);
}

struct server_frame {
  ws::opcode op;
  std::string payload;
  std::uint16_t close_code() const {
    REQUIRE(payload.size() >= 2);
    return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]));
  }
};

struct harness_options {
  std::vector<std::string> sets;  // --set style config overrides
  int client_receive_buffer = 0;  // SO_RCVBUF of the client, before it connects
  int server_send_buffer = 0;     // SO_SNDBUF of the server's socket
  std::string early_bytes;        // frames that came with the upgrade request
};

// One connection: a runtime that is never started, its worker run here, and a client socket.
struct harness {
  net::runtime rt;
  net::worker& w;
  asio::io_context client_io;
  tcp::socket client{client_io};
  session_log log;
  std::weak_ptr<net::ws_transport<tcp::socket>> transport;
  std::string received;  // from the server, not parsed yet
  std::string handshake;
  std::vector<server_frame> frames;
  bool eof = false;
  int read_error = 0;

  explicit harness(harness_options o = {}) : rt(load(o.sets)), w(rt.at(0)) {
    tcp::acceptor acceptor(w.io(), tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    client.open(tcp::v4());
    if (o.client_receive_buffer) client.set_option(asio::socket_base::receive_buffer_size(o.client_receive_buffer));
    client.connect(acceptor.local_endpoint());  // the kernel completes it before accept
    tcp::socket server = acceptor.accept();
    if (o.server_send_buffer) server.set_option(asio::socket_base::send_buffer_size(o.server_send_buffer));
    REQUIRE(rt.admit(swarmcoord::swarm::ip_address::v4(127, 0, 0, 1)) == net::runtime::admit_result::admitted);  // finish() releases it
    auto t = std::make_shared<net::ws_transport<tcp::socket>>(std::move(server), w, rt,
                                                               swarmcoord::metrics::protocol::webtorrent,
                                                               swarmcoord::swarm::ip_address::v4(127, 0, 0, 1));
    transport = t;
    t->run(std::make_unique<fake_session>(*t, log), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", o.early_bytes);
    REQUIRE(run_until([&] { return !handshake.empty(); }));
    CHECK(handshake.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0) == 0);
    CHECK(handshake.find("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != std::string::npos);
    CHECK(w.connection_count() == 1);
    CHECK(w.net_counters().connections[webtorrent] == 1);
  }

  static swarmcoord::config::config load(std::vector<std::string> sets) {
    sets.insert(sets.begin(), "server.threads=1");
    return swarmcoord::config::load(swarmcoord::config::sources{"", std::move(sets), {}});
  }

  void write(const std::string& bytes) { asio::write(client, asio::buffer(bytes)); }

  // Reads what the client was sent, without blocking, and parses it.
  void read_client() {
    char buffer[65536];
    while (!eof && !read_error) {
      const ssize_t n = ::recv(client.native_handle(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) received.append(buffer, static_cast<std::size_t>(n));
      else if (n == 0) eof = true;
      else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) read_error = errno;
      else break;
    }
    if (handshake.empty()) {
      const auto end = received.find("\r\n\r\n");
      if (end == std::string::npos) return;
      handshake = received.substr(0, end + 4);
      received.erase(0, end + 4);
    }
    while (auto f = take_frame()) frames.push_back(std::move(*f));
  }

  // One complete server frame off the front of `received` (unmasked, final, as the server sends).
  std::optional<server_frame> take_frame() {
    if (received.size() < 2) return std::nullopt;
    const auto* b = reinterpret_cast<const unsigned char*>(received.data());
    CHECK((b[0] & 0x80) != 0);
    CHECK((b[1] & 0x80) == 0);
    std::size_t header = 2, length = b[1] & 0x7F;
    if (length == 126) {
      if (received.size() < 4) return std::nullopt;
      header = 4;
      length = (std::size_t{b[2]} << 8) | b[3];
    } else if (length == 127) {
      if (received.size() < 10) return std::nullopt;
      header = 10;
      length = 0;
      for (int i = 2; i < 10; ++i) length = (length << 8) | b[i];
    }
    if (received.size() < header + length) return std::nullopt;
    server_frame f{static_cast<ws::opcode>(b[0] & 0x0F), received.substr(header, length)};
    received.erase(0, header + length);
    return f;
  }

  // Runs the worker a round at a time until done() holds; false at the deadline (~5 s).
  template <class Done>
  bool run_until(Done done) {
    for (int round = 0; round < 500; ++round) {
      read_client();
      if (done()) return true;
      if (w.io().stopped()) w.io().restart();
      w.io().run_one_for(10ms);
    }
    read_client();
    return done();
  }
  // Runs every handler that is ready, without waiting.
  void run_ready() {
    if (w.io().stopped()) w.io().restart();
    w.io().poll();
    read_client();
  }

  bool frames_arrived(std::size_t n) {
    return run_until([&] { return frames.size() >= n; });
  }

  // The transport's keep-alive sweep, as the worker calls it, `ms_later` from now.
  void tick(std::int64_t ms_later) {
    auto t = transport.lock();
    REQUIRE(t);
    t->tick(net::monotonic_ms() + ms_later);
  }

  // The end of every case: the session heard of it exactly once, the slot is given back.
  void check_finished() {
    REQUIRE(run_until([&] { return log.closed > 0; }));
    run_ready();
    CHECK(log.closed == 1);
    CHECK(transport.expired());
    CHECK(w.connection_count() == 0);
    CHECK(w.net_counters().connections[webtorrent] == 0);
    CHECK(rt.open_connections() == 0);
  }
  // The client hangs up, then the case ends.
  void hang_up_and_check_finished() {
    client.close();
    check_finished();
  }
};

TEST_CASE("ws transport: messages in and out while open", "[transport]") {
  harness c;
  c.log.react = [](ss::transport& t, std::string_view m) { CHECK(t.send(text("re:" + std::string(m)))); };
  c.write(client_frame(ws::opcode::text, "hi"));
  REQUIRE(c.frames_arrived(1));
  CHECK(c.log.messages == std::vector<std::string>{"hi"});
  CHECK(c.frames[0].op == ws::opcode::text);
  CHECK(c.frames[0].payload == "re:hi");

  // A frame split over two reads reaches the session whole, and several in one read each.
  const std::string big = client_frame(ws::opcode::text, std::string(300, 'b'));
  c.write(big.substr(0, 100));
  c.run_ready();
  c.write(big.substr(100) + client_frame(ws::opcode::text, "x") + client_frame(ws::opcode::text, "y"));
  REQUIRE(c.frames_arrived(4));
  CHECK(c.log.messages == std::vector<std::string>{"hi", std::string(300, 'b'), "x", "y"});
  CHECK(c.frames[3].payload == "re:y");
  CHECK(c.log.closed == 0);
  CHECK_FALSE(c.eof);
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: frames sent with the upgrade request are taken first", "[transport]") {
  harness c({{}, 0, 0, client_frame(ws::opcode::text, "early") + client_frame(ws::opcode::text, "bird")});
  CHECK(c.log.messages == std::vector<std::string>{"early", "bird"});
  c.write(client_frame(ws::opcode::text, "worm"));
  REQUIRE(c.run_until([&] { return c.log.messages.size() == 3; }));
  CHECK(c.log.messages.back() == "worm");
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: over server.max_messages_per_second, reading pauses and resumes", "[transport]") {
  harness c({{"server.max_messages_per_second=100"}});
  std::string burst;
  for (int i = 0; i < 110; ++i) burst += client_frame(ws::opcode::text, std::to_string(i));
  c.write(burst);
  // The burst allowance and the message that found the bucket empty; the rest waits.
  REQUIRE(c.run_until([&] { return c.log.messages.size() >= 101; }));
  c.run_ready();
  CHECK(c.log.messages.size() == 101);
  CHECK(c.w.net_counters().reads_throttled == 1);
  // A timer resumes reading; every message arrives, in order.
  REQUIRE(c.run_until([&] { return c.log.messages.size() == 110; }));
  for (int i = 0; i < 110; ++i) CHECK(c.log.messages[i] == std::to_string(i));
  CHECK(c.w.net_counters().reads_throttled >= 2);
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: keep-alive ping, then the idle timeout", "[transport]") {
  harness c({{"server.idle_timeout_s=10"}});
  c.tick(4000);
  c.run_ready();
  CHECK(c.frames.empty());
  c.tick(5000);  // half the timeout without a word: one ping
  REQUIRE(c.frames_arrived(1));
  CHECK(c.frames[0].op == ws::opcode::ping);
  c.tick(6000);
  c.run_ready();
  CHECK(c.frames.size() == 1);  // not one a sweep
  c.tick(10000);  // still nothing heard: closed, without a close handshake
  c.check_finished();
  CHECK(c.eof);
  CHECK(c.frames.size() == 1);
}

TEST_CASE("ws transport: a client that never answers our close is cut off at the deadline", "[transport]") {
  harness c;
  c.log.react = [](ss::transport& t, std::string_view) { t.close(ws::close_code::normal, ""); };
  c.write(client_frame(ws::opcode::text, "bye"));
  REQUIRE(c.run_until([&] { return c.eof; }));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].close_code() == 1000);
  c.tick(4000);
  c.run_ready();
  CHECK(c.log.closed == 0);
  c.tick(6000);
  c.check_finished();
}

TEST_CASE("ws transport: a ping is answered with a pong of the same payload", "[transport]") {
  harness c;
  c.write(client_frame(ws::opcode::ping, "are you there"));
  REQUIRE(c.frames_arrived(1));
  CHECK(c.frames[0].op == ws::opcode::pong);
  CHECK(c.frames[0].payload == "are you there");
  CHECK(c.log.messages.empty());
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: the session closes", "[transport]") {
  harness c;
  bool sent_after_close = true;
  c.log.react = [&](ss::transport& t, std::string_view m) {
    if (m != "close me") return;
    t.send(text("one"));
    t.send(text("two"));
    t.close(ws::close_code::policy_error, "go away");
    sent_after_close = t.send(text("three"));
  };
  c.write(client_frame(ws::opcode::text, "close me"));
  // What was queued goes out first, then the close frame; then our side of TCP is shut.
  REQUIRE(c.run_until([&] { return c.eof; }));
  CHECK_FALSE(sent_after_close);
  REQUIRE(c.frames.size() == 3);
  CHECK(c.frames[0].payload == "one");
  CHECK(c.frames[1].payload == "two");
  CHECK(c.frames[2].op == ws::opcode::close);
  CHECK(c.frames[2].close_code() == 1008);
  CHECK(c.frames[2].payload.substr(2) == "go away");
  // The server waits for the client's answer.
  c.run_ready();
  CHECK(c.log.closed == 0);
  CHECK(c.w.connection_count() == 1);

  // Messages after our close are not handed on; the client's close completes the handshake
  // and the server hangs up, though the client keeps its socket open.
  c.write(client_frame(ws::opcode::text, "late") + client_close(1000));
  c.check_finished();
  CHECK(c.log.messages == std::vector<std::string>{"close me"});
  CHECK(c.frames.size() == 3);
}

TEST_CASE("ws transport: the client closes", "[transport]") {
  harness c;
  c.write(client_close(4000, "done") + client_frame(ws::opcode::text, "after"));
  // The echo carries the client's code; then the server shuts its side.
  REQUIRE(c.run_until([&] { return c.eof; }));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].op == ws::opcode::close);
  CHECK(c.frames[0].payload.size() == 2);
  CHECK(c.frames[0].close_code() == 4000);
  c.run_ready();
  CHECK(c.log.closed == 0);  // until the client hangs up
  CHECK(c.log.messages.empty());
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: a close without a code is echoed without one", "[transport]") {
  harness c;
  c.write(client_frame(ws::opcode::close, ""));
  REQUIRE(c.run_until([&] { return c.eof; }));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].op == ws::opcode::close);
  CHECK(c.frames[0].payload.empty());
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: a framing error closes with 1002 and drops the rest", "[transport]") {
  harness c;
  c.log.react = [](ss::transport& t, std::string_view) { t.send(text("never")); };
  c.write(client_frame(ws::opcode::text, "unmasked", false) + client_frame(ws::opcode::text, "dropped"));
  REQUIRE(c.run_until([&] { return c.eof; }));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].op == ws::opcode::close);
  CHECK(c.frames[0].close_code() == 1002);
  // Read and dropped until the client hangs up.
  c.write(client_frame(ws::opcode::text, "still dropped"));
  c.run_ready();
  CHECK(c.log.closed == 0);
  CHECK(c.log.messages.empty());
  c.hang_up_and_check_finished();
  CHECK(c.w.net_counters().messages_too_big[webtorrent] == 0);
}

TEST_CASE("ws transport: a message over server.max_message_bytes closes with 1009", "[transport]") {
  harness c({{"server.max_message_bytes=1024"}});
  c.write(client_frame(ws::opcode::text, std::string(1024, 'a')));  // at the limit: fine
  REQUIRE(c.run_until([&] { return c.log.messages.size() == 1; }));
  c.write(client_frame(ws::opcode::text, std::string(1025, 'a')));
  REQUIRE(c.run_until([&] { return c.eof; }));
  REQUIRE(c.frames.size() == 1);
  CHECK(c.frames[0].op == ws::opcode::close);
  CHECK(c.frames[0].close_code() == 1009);
  CHECK(c.w.net_counters().messages_too_big[webtorrent] == 1);
  CHECK(c.log.messages.size() == 1);
  c.hang_up_and_check_finished();
}

TEST_CASE("ws transport: a client that does not read is dropped at the write queue bound", "[transport]") {
  // The smallest queue allowed, and small socket buffers, so that the bound is soon reached.
  harness c({{"server.max_write_queue_bytes=65536"}, 4096, 4096});
  const std::string chunk(8192, 'z');
  int sent = 0;
  bool refused = false;
  for (; sent < 4000 && !refused; ++sent) {
    REQUIRE(c.log.transport);
    refused = !c.log.transport->send(text(chunk));
    c.w.io().restart();
    c.w.io().poll();  // writes what the socket takes
  }
  REQUIRE(refused);
  // More than the bound went out before: what is bounded is the queue, not the traffic.
  CHECK((sent - 1) * chunk.size() > 65536);
  CHECK(c.w.net_counters().slow_consumers_closed == 1);
  c.check_finished();
  CHECK(c.w.net_counters().slow_consumers_closed == 1);
}

}  // namespace
