#include "server/locality/locator.hpp"

#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace swarmcoord::locality {

struct locator::database {
  MMDB_s mmdb{};
  database(const char* key, const std::string& path) {
    const int status = MMDB_open(path.c_str(), MMDB_MODE_MMAP, &mmdb);
    if (status != MMDB_SUCCESS)
      throw std::runtime_error(std::string(key) + ": cannot open MaxMind database " + path + ": " +
                               MMDB_strerror(status));
  }
  ~database() { MMDB_close(&mmdb); }
};

std::uint16_t pack_country(std::string_view iso) {
  if (iso.size() != 2 || !std::isalpha(static_cast<unsigned char>(iso[0])) ||
      !std::isalpha(static_cast<unsigned char>(iso[1])))
    return 0;
  return static_cast<std::uint16_t>((std::toupper(static_cast<unsigned char>(iso[0])) << 8) |
                                    std::toupper(static_cast<unsigned char>(iso[1])));
}

locator::locator(std::vector<std::pair<swarm::cidr, std::string>> sites, const std::string& geoip_db,
                 const std::string& asn_db) {
  for (auto& [range, name] : sites) {
    auto known = std::find(names_.begin(), names_.end(), name);
    std::uint32_t id;
    if (known == names_.end()) {
      names_.push_back(name);
      id = static_cast<std::uint32_t>(names_.size());
    } else {
      id = static_cast<std::uint32_t>(known - names_.begin() + 1);
    }
    sites_.push_back({range, id});
  }
  std::stable_sort(sites_.begin(), sites_.end(),
                   [](const site_range& a, const site_range& b) { return a.range.prefix > b.range.prefix; });
  if (!geoip_db.empty()) databases_.push_back(std::make_unique<database>("locality.geoip_db", geoip_db));
  if (!asn_db.empty()) databases_.push_back(std::make_unique<database>("locality.asn_db", asn_db));
}

locator::~locator() = default;

std::size_t locator::database_count() const { return databases_.size(); }

const std::string& locator::site_name(std::uint32_t id) const {
  static const std::string none;
  return id == 0 || id > names_.size() ? none : names_[id - 1];
}

swarm::location locator::locate(const swarm::ip_address& address) const {
  swarm::location where;
  where.subnet = swarm::subnet_key(address);
  for (const auto& s : sites_)
    if (s.range.contains(address)) {
      where.site = s.id;
      break;
    }
  if (databases_.empty()) return where;

  sockaddr_storage storage{};
  if (address.is_v4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, address.bytes.data() + 12, 4);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, address.bytes.data(), 16);
  }
  for (const auto& db : databases_) {
    int mmdb_error = 0;
    auto result = MMDB_lookup_sockaddr(&db->mmdb, reinterpret_cast<const sockaddr*>(&storage), &mmdb_error);
    if (mmdb_error != MMDB_SUCCESS || !result.found_entry) continue;
    MMDB_entry_data_s data{};
    if (where.country == 0 && MMDB_get_value(&result.entry, &data, "country", "iso_code", nullptr) == MMDB_SUCCESS &&
        data.has_data && data.type == MMDB_DATA_TYPE_UTF8_STRING)
      where.country = pack_country(std::string_view(data.utf8_string, data.data_size));
    if (where.asn == 0 && MMDB_get_value(&result.entry, &data, "autonomous_system_number", nullptr) == MMDB_SUCCESS &&
        data.has_data) {
      if (data.type == MMDB_DATA_TYPE_UINT32) where.asn = data.uint32;
      else if (data.type == MMDB_DATA_TYPE_UINT16) where.asn = data.uint16;
      else if (data.type == MMDB_DATA_TYPE_UINT64) where.asn = static_cast<std::uint32_t>(data.uint64);
    }
  }
  return where;
}

}  // namespace swarmcoord::locality
