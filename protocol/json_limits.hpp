#pragma once
// Parsing of untrusted JSON text: never throws, bounds nesting depth before the parser runs.
// Pure; thread-safe.
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "protocol/json_text.hpp"  // default_max_json_depth

namespace swarmcoord::protocol {

struct json_parse_result {
  nlohmann::json value;
  std::string error;  // empty on success; else a human sentence naming the problem
  bool ok() const { return error.empty(); }
};

json_parse_result parse_untrusted_json(std::string_view text,
                                       std::size_t max_depth = default_max_json_depth);

}  // namespace swarmcoord::protocol
