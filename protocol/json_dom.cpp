#include "protocol/json_dom.hpp"

#include <algorithm>
#include <bit>

#include "protocol/json_escape.hpp"
#include "protocol/json_writer.hpp"

namespace swarmcoord::protocol {
namespace {

namespace dom = simdjson::dom;

}  // namespace

simdjson::simdjson_result<dom::element> parse_json(std::string_view text) {
  // simdjson refuses max_depth levels or more, not counting an innermost empty container.
  // So 32 levels of objects or arrays pass and 33 do not (33 whose innermost is empty,
  // [[…[]…]], pass too: harmless).
  static constexpr std::size_t max_depth = default_max_json_depth + 1;
  thread_local dom::parser parser;
  if (parser.capacity() < text.size() || parser.max_depth() != max_depth) {
    // In powers of two, so that ever-longer messages cost only a few reallocations.
    const std::size_t capacity = std::bit_ceil(std::max<std::size_t>(text.size(), 4096));
    if (auto err = parser.allocate(capacity, max_depth)) return err;
  }
  return parser.parse(text.data(), text.size());  // copies the text into a padded buffer
}

std::string parse_error_message(simdjson::error_code err) {
  if (err == simdjson::DEPTH_ERROR)
    return "JSON nested deeper than " + std::to_string(default_max_json_depth) + " levels";
  return std::string("JSON parse error: ") + simdjson::error_message(err);
}

// Recursion is bounded by the parser's depth limit. (The getters cannot fail: the type is
// checked first.)
void append_json(std::string& out, dom::element e) {
  switch (e.type()) {
    case dom::element_type::OBJECT: {
      out.push_back('{');
      bool first = true;
      const dom::object obj = e.get_object().value_unsafe();
      for (dom::key_value_pair kv : obj) {
        if (!first) out.push_back(',');
        first = false;
        append_escaped(out, kv.key);
        out.push_back(':');
        append_json(out, kv.value);
      }
      out.push_back('}');
      break;
    }
    case dom::element_type::ARRAY:
      append_array(out, e.get_array().value_unsafe(), [](std::string& o, dom::element v) { append_json(o, v); });
      break;
    case dom::element_type::STRING: append_escaped(out, e.get_string().value_unsafe()); break;
    case dom::element_type::INT64: append_int(out, e.get_int64().value_unsafe()); break;
    case dom::element_type::UINT64: append_uint(out, e.get_uint64().value_unsafe()); break;
    case dom::element_type::DOUBLE: append_double(out, e.get_double().value_unsafe()); break;
    case dom::element_type::BOOL: out.append(e.get_bool().value_unsafe() ? "true" : "false"); break;
    case dom::element_type::NULL_VALUE: out.append("null"); break;
  }
}

json_text text_of(dom::element e, std::size_t expected_bytes) {
  json_text t;
  t.text.reserve(expected_bytes);
  append_json(t.text, e);
  return t;
}

}  // namespace swarmcoord::protocol
