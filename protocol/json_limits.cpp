#include "protocol/json_limits.hpp"

namespace swarmcoord::protocol {
namespace {

// Deepest bracket nesting outside strings. A linear pre-scan is far cheaper than letting a
// hostile "[[[[…" build (and later destroy) thousands of nested values.
std::size_t nesting_depth(std::string_view text, std::size_t stop_at) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[': case '{':
        if (++depth > deepest && (deepest = depth) > stop_at) return deepest;
        break;
      case ']': case '}':
        if (depth > 0) --depth;
        break;
      default: break;
    }
  }
  return deepest;
}

}  // namespace

json_parse_result parse_untrusted_json(std::string_view text, std::size_t max_depth) {
  json_parse_result result;
  if (nesting_depth(text, max_depth) > max_depth) {
    result.error = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
    return result;
  }
  try {
    result.value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error for bad syntax, but also out_of_range for number overflow ("1e400").
    // nlohmann prefixes "[json.exception.parse_error.101] "; operators want only the sentence.
    std::string_view what = e.what();
    if (auto pos = what.find("] "); pos != std::string_view::npos) what.remove_prefix(pos + 2);
    result.error = std::string(what);
  }
  return result;
}

}  // namespace swarmcoord::protocol
