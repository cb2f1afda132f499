#include "protocol/json_dom.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <optional>

#include "protocol/json_escape.hpp"
#include "protocol/json_writer.hpp"

namespace swarmcoord::protocol {
namespace {

namespace dom = simdjson::dom;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// `text` with every integer that fits in no 64-bit integer made a double ("…0" becomes
// "…0.0"), or nullopt when it has none. Strings are copied untouched; nothing else changes,
// so whatever made the text invalid besides still does.
std::optional<std::string> with_wide_integers_as_doubles(std::string_view text) {
  std::string out;
  bool changed = false;
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (c == '"') {  // to the closing quote, skipping escaped characters
      std::size_t end = i + 1;
      while (end < text.size() && text[end] != '"') end += text[end] == '\\' ? 2 : 1;
      end = std::min(end + 1, text.size());
      out.append(text.substr(i, end - i));
      i = end;
      continue;
    }
    if (c != '-' && !is_digit(c)) {
      out.push_back(c);
      ++i;
      continue;
    }
    std::size_t end = i + 1;  // a number: the characters JSON allows in one
    while (end < text.size() && (is_digit(text[end]) || std::string_view("+-.eE").find(text[end]) != std::string_view::npos))
      ++end;
    const std::string_view number = text.substr(i, end - i);
    out.append(number);
    const std::size_t first_digit = number[0] == '-' ? 1 : 0;
    if (number.size() > first_digit && number.find_first_not_of("0123456789", first_digit) == std::string_view::npos) {
      bool too_wide;
      if (number[0] == '-') {
        std::int64_t v;
        too_wide = std::from_chars(number.data(), number.data() + number.size(), v).ec == std::errc::result_out_of_range;
      } else {
        std::uint64_t v;
        too_wide = std::from_chars(number.data(), number.data() + number.size(), v).ec == std::errc::result_out_of_range;
      }
      if (too_wide) {
        out.append(".0");
        changed = true;
      }
    }
    i = end;
  }
  if (!changed) return std::nullopt;
  return out;
}

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

bool nested_deeper_than(dom::element e, std::size_t levels) {
  dom::object obj;
  if (!e.get_object().get(obj)) {
    if (levels == 0) return true;
    for (dom::key_value_pair kv : obj)
      if (nested_deeper_than(kv.value, levels - 1)) return true;
    return false;
  }
  dom::array list;
  if (!e.get_array().get(list)) {
    if (levels == 0) return true;
    for (dom::element v : list)
      if (nested_deeper_than(v, levels - 1)) return true;
  }
  return false;
}

simdjson::simdjson_result<dom::element> parse_json_wide_integers(std::string_view text) {
  auto parsed = parse_json(text);
  if (parsed.error() != simdjson::NUMBER_ERROR) return parsed;
  const auto widened = with_wide_integers_as_doubles(text);
  return widened ? parse_json(*widened) : parsed;
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
