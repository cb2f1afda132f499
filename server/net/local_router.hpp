#pragma once
// The router of one worker (sessions/router.hpp) for swarms sharded over the workers of this
// process. A swarm's owner is the worker its key hashes to (runtime::shard_of); a request is
// run there at once when that is this worker, else posted. Results come back by connection id
// through worker::deliver, batched per target worker.
//
// Ordering, the one place it is written down:
// - Each worker runs what is posted to it first in, first out, and a worker posts the results
//   of one request to a home in one batch. So the results of a connection's requests to one
//   owner arrive in the order of the requests.
// - Requests to different owners may be answered in any order (they concern other swarms).
// - A reply the session makes itself (a protocol error, a refusal, a close) must not overtake
//   the results of the connection's earlier requests to the last owner it used: it travels
//   through that owner and back (to_home_in_order), behind them in both queues.
// - Everything queued for a socket during one round of handlers goes out in one write
//   (worker::write_later).
// Home thread only.
#include "server/sessions/router.hpp"

namespace swarmcoord::net {

class runtime;
class worker;
using swarm::connection_id;

class local_router final : public sessions::router {
 public:
  local_router(runtime& rt, worker& home) : rt_(rt), home_(home) {}

  void to_owner(sessions::route_state& route, sessions::owner_request&& request) override;
  void to_home_in_order(const sessions::route_state& route, connection_id to, sessions::home_message&& m) override;
  void scrape(connection_id from, sessions::wt::scrape&& s) override;
  void connection_closed(sessions::route_state& route, sessions::connection_gone&& gone) override;

 private:
  unsigned owner_of(const sessions::owner_request& request) const;

  runtime& rt_;
  worker& home_;
};

}  // namespace swarmcoord::net
