#pragma once
// The schema of swarmcoord's configuration: every key with its type, default, range,
// documentation and extra check, in one table (config_schema.cpp); config.cpp builds,
// validates and prints configurations from it. Internal to server/config.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

namespace swarmcoord::config::schema_detail {

enum class kind { integer, string, boolean, string_list };

struct key_spec {
  const char* section;
  const char* key;
  kind type;
  const char* default_toml;  // the default as a TOML value literal
  const char* doc;
  std::int64_t min = 0, max = 0;                  // integers
  std::string (*check)(const toml::node&) = nullptr;  // extra validation; "" when fine
};

const std::vector<key_spec>& schema();
const key_spec* find_key(std::string_view section, std::string_view key);
std::string full_name(const key_spec& k);
// A value as TOML source, for print(): complete and escaped.
std::string toml_text(const toml::node& n);
// Throws config_error naming the key when the value breaks its type, range or check.
void validate(const key_spec& k, const toml::node& n);

}  // namespace swarmcoord::config::schema_detail
