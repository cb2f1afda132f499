#include "server/net/local_router.hpp"

#include <boost/asio/post.hpp>

#include "server/net/runtime.hpp"

namespace swarmcoord::net {

unsigned local_router::owner_of(const sessions::owner_request& request) const {
  return std::visit(sessions::overloaded{
                        [&](const sessions::announce_request& a) { return rt_.shard_of(a.announce.info_hash); },
                        [&](const sessions::answer_request& a) { return rt_.shard_of(a.answer.info_hash); },
                        [&](const sessions::native_request& n) {
                          return std::visit([&](const auto& m) { return rt_.shard_of(m.swarm); }, n.message);
                        },
                    },
                    request);
}

void local_router::to_owner(sessions::route_state& route, sessions::owner_request&& request) {
  const unsigned owner = owner_of(request);
  route.owners_used |= std::uint64_t{1} << owner;
  route.last_owner = owner;
  rt_.run_on(owner, [&target = rt_.at(owner), request = std::move(request)]() mutable {
    target.handle(std::move(request));
  });
}

void local_router::to_home_in_order(const sessions::route_state& route, connection_id to, sessions::home_message&& m) {
  if (route.last_owner == sessions::route_state::no_owner || route.last_owner == home_.index())
    return home_.deliver(to, std::move(m));
  // Behind the results of the connection's requests: through the last owner's queue, then
  // through ours (see the header).
  rt_.run_on(route.last_owner, [&home = home_, to, m = std::move(m)]() mutable {
    boost::asio::post(home.io(), [&home, to, m = std::move(m)]() mutable { home.deliver(to, std::move(m)); });
  });
}

void local_router::scrape(connection_id from, sessions::wt::scrape&& s) {
  runtime* rt = &rt_;
  auto hashes = std::make_shared<const std::vector<protocol::binary_id>>(std::move(s.info_hashes));
  const bool all = s.all;
  // Only the owners of the info_hashes asked for (all of them for a scrape of everything).
  std::uint64_t owners = all ? ~std::uint64_t{0} : 0;
  for (const auto& h : *hashes) owners |= std::uint64_t{1} << rt_.shard_of(h);
  rt_.gather<std::vector<sessions::wt::scrape_file>>(
      home_.io().get_executor(),
      [rt, hashes, all](worker& w) {
        std::vector<sessions::wt::scrape_file> files;
        if (all) {
          w.tracker().scrape_all(files);
        } else {
          std::vector<protocol::binary_id> mine;
          for (const auto& h : *hashes)
            if (rt->shard_of(h) == w.index()) mine.push_back(h);
          w.tracker().scrape(mine, files);
        }
        return files;
      },
      [&home = home_, from, all](std::vector<std::vector<sessions::wt::scrape_file>> parts) {
        sessions::scrape_result result;
        result.all = all;
        for (auto& p : parts) result.files.insert(result.files.end(), p.begin(), p.end());
        home.deliver(from, std::move(result));
      },
      owners);
}

void local_router::connection_closed(sessions::route_state& route, sessions::connection_gone&& gone) {
  for (unsigned owner = 0; route.owners_used != 0; ++owner, route.owners_used >>= 1)
    if (route.owners_used & 1) rt_.run_on(owner, [&target = rt_.at(owner), gone] { target.handle(gone); });
}

}  // namespace swarmcoord::net
