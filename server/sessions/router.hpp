#pragma once
// The one rule between connections and swarms: work on a swarm runs on the swarm's owner,
// its results go to the homes of the connections they are for, and each connection gets its
// results in the order of its messages. Owner and home are workers of this process today
// (net/local_router.hpp); every request and result below is a plain value that could be
// serialized, so that they can be other instances of a cluster tomorrow.
// The interface is used on the connection's home thread only.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "protocol/native.hpp"
#include "protocol/webtorrent.hpp"
#include "protocol/websocket.hpp"
#include "server/swarm/address.hpp"
#include "server/swarm/ids.hpp"
#include "server/swarm/mesh.hpp"

namespace swarmcoord::sessions {

using swarm::connection_id;
namespace wt = protocol::webtorrent;
namespace nv = protocol::native;

// Visits a request or result with one lambda per alternative: std::visit(overloaded{...}, m).
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

// One encoded message, shared by every connection it fans out to.
struct outbound {
  std::shared_ptr<const std::string> payload;
  std::uint8_t type = 0;  // index of the protocol's server_message alternative (a metric label)
};

// ---- requests, run on the owner of a swarm
struct announce_request {
  connection_id from;
  swarm::ip_address address;  // the client's, for locality
  wt::announce announce;
  std::uint32_t ticket = 0;  // the session's number of this announce, echoed in pair_released
};
struct answer_request {
  connection_id from;
  wt::answer answer;
};
using native_message = std::variant<nv::join, nv::have, nv::leave, nv::signal, nv::report>;
struct native_request {
  swarm::member_info who;
  native_message message;
  std::uint32_t join_ticket = 0;  // join only: echoed in its join_refused
};
using owner_request = std::variant<announce_request, answer_request, native_request>;

// The connection closed: every owner it sent work to drops what it announced or joined.
struct connection_gone {
  connection_id conn;
  std::optional<nv::peer_id> native_peer;  // set for native connections that said hello
};

// ---- results, delivered at the home of a connection
// A native join was refused by its swarm's owner: the connection is not a member, and its
// slot under limits.max_swarms_per_connection comes back (swarm::join_outcome::refused).
// The ticket tells which joins it answers: a refusal of joins made before a leave must not
// free the slot of a join made after it.
struct join_refused {
  std::string swarm;
  std::uint32_t ticket = 0;
};
// A WebTorrent pair stopped belonging to the connection (swarm::released_peer). The ticket is
// that of the latest announce of the pair the owner had seen: a release that crossed a newer
// announce of the pair on its way home is stale (the pair may be this connection's again).
struct pair_released {
  protocol::binary_id info_hash;
  protocol::binary_id peer_id;
  std::uint32_t ticket = 0;
};
// The counts of a scrape, from every owner asked.
struct scrape_result {
  std::vector<wt::scrape_file> files;
  bool all = false;  // a scrape of every swarm (capped at tracker.max_scrape_all)
};
// Close the connection (after what was delivered before).
struct close_request {
  protocol::websocket::close_code code;
  std::string reason;
};
using home_message = std::variant<outbound, join_refused, pair_released, scrape_result, close_request>;

// What the router keeps of one connection, held by its session so that routing costs no
// lookup: the owners it sent work to (told when it goes) and the last one (the connection's
// own replies wait for that owner's results).
struct route_state {
  static constexpr unsigned no_owner = ~0u;
  std::uint64_t owners_used = 0;  // bit i: worker i (swarm::max_workers bits)
  unsigned last_owner = no_owner;
};

class router {
 public:
  virtual ~router() = default;
  // Runs the request on the owner of its swarm (the info_hash's, or the native swarm key's).
  virtual void to_owner(route_state& route, owner_request&& request) = 0;
  // Delivers m to connection `to` on this home, after the results of its earlier requests.
  virtual void to_home_in_order(const route_state& route, connection_id to, home_message&& m) = 0;
  // Asks the owners of the info_hashes (every owner for a scrape of all) for their counts;
  // one scrape_result comes home.
  virtual void scrape(connection_id from, wt::scrape&& s) = 0;
  // The connection closed: every owner it used hears of it.
  virtual void connection_closed(route_state& route, connection_gone&& gone) = 0;
};

}  // namespace swarmcoord::sessions
