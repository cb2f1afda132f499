#include "protocol/json_limits.hpp"

#include <cstring>

namespace swarmcoord::protocol {
namespace {

// Deepest bracket nesting outside strings. A linear pre-scan is far cheaper than letting a
// hostile "[[[[…" build (and later destroy) thousands of nested values. Strings (most of a
// message: SDP text) are skipped with memchr to their closing quote, the one not preceded by
// an odd run of backslashes.
std::size_t nesting_depth(std::string_view text, std::size_t stop_at) {
  std::size_t depth = 0, deepest = 0;
  const char* p = text.data();
  const char* const end = p + text.size();
  while (p < end) {
    switch (*p++) {
      case '"':
        for (;;) {
          const auto* quote = static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(end - p)));
          if (!quote) return deepest;  // unterminated: the parser says so
          std::size_t backslashes = 0;
          for (const char* b = quote; b > p && b[-1] == '\\'; --b) ++backslashes;
          p = quote + 1;
          if (backslashes % 2 == 0) break;
        }
        break;
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
