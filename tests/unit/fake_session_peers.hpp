#pragma once
// Fakes of what a protocol session talks to (sessions/transport.hpp, sessions/router.hpp):
// they record every call, so that a test can tell what a session sent, closed and routed.
// The router plays owners the way net/local_router does (route.last_owner, owners_used) and
// lets the test bring the home messages back to the session.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "server/sessions/protocol_session.hpp"
#include "server/sessions/router.hpp"
#include "server/sessions/transport.hpp"

namespace swarmcoord::test {

namespace ss = swarmcoord::sessions;

// The index of alternative T in variant V (a counter's index for a message type).
template <class V, class T, std::size_t I = 0>
constexpr std::size_t index_in() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, V>, T>) return I;
  else return index_in<V, T, I + 1>();
}

struct fake_transport final : ss::transport {
  std::vector<std::string> sent;  // what it took, in order
  bool refuse = false;            // act as a connection that is closing
  unsigned close_calls = 0;
  protocol::websocket::close_code close_code = protocol::websocket::close_code::normal;
  std::string close_reason;

  bool send(std::shared_ptr<const std::string> text) override {
    if (refuse) return false;
    sent.push_back(*text);
    return true;
  }
  void close(protocol::websocket::close_code code, std::string_view reason) override {
    ++close_calls;
    close_code = code;
    close_reason = reason;
  }
};

struct fake_router final : ss::router {
  struct owner_call {
    ss::owner_request request;
    ss::route_state route_seen;  // the session's route state as the router got it
  };
  struct home_call {
    ss::route_state route_seen;
    ss::connection_id to = 0;
    ss::home_message message;
  };
  struct scrape_call {
    ss::connection_id from = 0;
    ss::wt::scrape scrape;
  };
  struct closed_call {
    ss::route_state route_seen;
    ss::connection_gone gone;
  };

  unsigned owner = 0;  // the worker that owns whatever is routed next
  std::vector<owner_call> to_owner_calls;
  std::vector<home_call> home_calls;  // to_home_in_order, not delivered yet
  std::vector<scrape_call> scrapes;
  std::vector<closed_call> closed;

  void to_owner(ss::route_state& route, ss::owner_request&& request) override {
    to_owner_calls.push_back({std::move(request), route});
    route.owners_used |= std::uint64_t{1} << owner;
    route.last_owner = owner;
  }
  void to_home_in_order(const ss::route_state& route, ss::connection_id to, ss::home_message&& m) override {
    home_calls.push_back({route, to, std::move(m)});
  }
  void scrape(ss::connection_id from, ss::wt::scrape&& s) override { scrapes.push_back({from, std::move(s)}); }
  void connection_closed(ss::route_state& route, ss::connection_gone&& gone) override {
    closed.push_back({route, std::move(gone)});
  }

  // The owner requests routed so far holding a T (announce_request, answer_request, ...).
  template <class T>
  std::vector<T> requests() const {
    std::vector<T> found;
    for (const auto& c : to_owner_calls)
      if (auto* r = std::get_if<T>(&c.request)) found.push_back(*r);
    return found;
  }
  // The native messages routed so far holding a T (nv::join, nv::have, ...).
  template <class T>
  std::vector<T> native() const {
    std::vector<T> found;
    for (const auto& r : requests<ss::native_request>())
      if (auto* m = std::get_if<T>(&r.message)) found.push_back(*m);
    return found;
  }
  // The texts of the outbound messages waiting for home, in order.
  std::vector<std::string> home_texts() const {
    std::vector<std::string> texts;
    for (const auto& c : home_calls)
      if (auto* o = std::get_if<ss::outbound>(&c.message)) texts.push_back(*o->payload);
    return texts;
  }
  std::vector<ss::close_request> home_closes() const {
    std::vector<ss::close_request> found;
    for (const auto& c : home_calls)
      if (auto* r = std::get_if<ss::close_request>(&c.message)) found.push_back(*r);
    return found;
  }
  // Brings every waiting home message to the session, in order, as a home worker would.
  void deliver_home(ss::protocol_session& session) {
    auto calls = std::move(home_calls);
    home_calls.clear();
    for (auto& c : calls) session.on_home_message(std::move(c.message));
  }
};

}  // namespace swarmcoord::test
