#pragma once
// Turns a client address into the location the mesh planner compares: operator site (longest
// matching CIDR of locality.sites), subnet, and ASN and country from optional MaxMind-format
// databases (read with libmaxminddb). Thread-safe after construction: lookups only read.
#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/swarm/address.hpp"
#include "server/swarm/mesh.hpp"

namespace swarmcoord::locality {

class locator {
 public:
  // Throws std::runtime_error naming the config key and file when a database cannot be opened.
  locator(std::vector<std::pair<swarm::cidr, std::string>> sites, const std::string& geoip_db,
          const std::string& asn_db);
  ~locator();
  locator(const locator&) = delete;
  locator& operator=(const locator&) = delete;

  swarm::location locate(const swarm::ip_address& address) const;
  // The operator's name of a site id from locate(); "" for 0.
  const std::string& site_name(std::uint32_t id) const;
  std::size_t site_count() const { return names_.size(); }
  std::size_t database_count() const;

 private:
  struct site_range {
    swarm::cidr range;
    std::uint32_t id;
  };
  struct database;
  std::vector<site_range> sites_;  // longest prefix first
  std::vector<std::string> names_;  // id - 1 -> name
  std::vector<std::unique_ptr<database>> databases_;
};

// Two ASCII letters packed as the planner compares countries; 0 for anything else.
std::uint16_t pack_country(std::string_view iso_code);

}  // namespace swarmcoord::locality
