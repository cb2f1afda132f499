// parse_untrusted_json: bounded nesting checked before parsing, never throws.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "protocol/json_limits.hpp"

namespace {

using swarmcoord::protocol::default_max_json_depth;
using swarmcoord::protocol::parse_untrusted_json;

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

// {"a":[{"a":[ ... ]}]} with exactly `depth` opening brackets.
std::string nested_mixed(std::size_t depth) {
  std::string open, close;
  for (std::size_t i = 0; i < depth; ++i) {
    if (i % 2 == 0) {
      open += R"({"a":)";
      close = "}" + close;
    } else {
      open += "[";
      close = "]" + close;
    }
  }
  return open + "1" + close;
}

}  // namespace

TEST_CASE("json nesting deeper than the limit is rejected before parsing") {
  SECTION("100000 unclosed brackets") {
    auto r = parse_untrusted_json(std::string(100000, '['));
    CHECK_FALSE(r.ok());
    CHECK_THAT(r.error, Catch::Contains("nested deeper than 32"));
    CHECK(r.value.is_null());
  }
  SECTION("100000 balanced brackets, which would be valid JSON") {
    auto r = parse_untrusted_json(nested_arrays(100000));
    CHECK_FALSE(r.ok());
    CHECK_THAT(r.error, Catch::Contains("nested deeper"));
  }
  SECTION("100000 opening braces") {
    auto r = parse_untrusted_json(std::string(100000, '{'));
    CHECK_FALSE(r.ok());
    CHECK_THAT(r.error, Catch::Contains("nested deeper"));
  }
}

TEST_CASE("json nesting exactly at the limit is accepted, one more level is not") {
  for (std::size_t limit : {1u, 2u, 5u, 17u}) {
    INFO("limit " << limit);
    auto at = parse_untrusted_json(nested_arrays(limit), limit);
    CHECK(at.ok());
    CHECK(at.value.is_array());
    auto over = parse_untrusted_json(nested_arrays(limit + 1), limit);
    CHECK_FALSE(over.ok());
    CHECK_THAT(over.error, Catch::Contains(std::to_string(limit)));

    CHECK(parse_untrusted_json(nested_mixed(limit), limit).ok());
    CHECK_FALSE(parse_untrusted_json(nested_mixed(limit + 1), limit).ok());
  }
  CHECK(parse_untrusted_json(nested_arrays(default_max_json_depth)).ok());
  CHECK_FALSE(parse_untrusted_json(nested_arrays(default_max_json_depth + 1)).ok());
}

TEST_CASE("json depth is the deepest point, not the number of brackets") {
  // Many siblings at depth 2 are fine with a limit of 2.
  std::string wide = "[";
  for (int i = 0; i < 1000; ++i) wide += (i ? ",[1]" : "[1]");
  wide += "]";
  auto r = parse_untrusted_json(wide, 2);
  REQUIRE(r.ok());
  CHECK(r.value.size() == 1000);
}

TEST_CASE("json brackets inside strings do not count towards the depth") {
  const std::string brackets(1000, '[');
  auto r = parse_untrusted_json(R"({"sdp":")" + brackets + R"(","x":"]]]}}}{{{"})", 1);
  REQUIRE(r.ok());
  CHECK(r.value["sdp"].get<std::string>() == brackets);
  CHECK(r.value["x"].get<std::string>() == "]]]}}}{{{");
}

TEST_CASE("json escaped quotes and backslashes inside strings are handled by the depth scan") {
  SECTION("an escaped quote does not end the string") {
    // If \" ended the string, the brackets after it would count and exceed the limit.
    auto r = parse_untrusted_json(R"(["a\"[[[[[[[[", "b"])", 1);
    REQUIRE(r.ok());
    CHECK(r.value[0].get<std::string>() == "a\"[[[[[[[[");
  }
  SECTION("an escaped backslash before the closing quote does end the string") {
    // If \\" were read as backslash + escaped quote, the scan would think it is still inside
    // the string and miss the real nesting that follows.
    auto r = parse_untrusted_json(R"(["a\\", [[[[[1]]]]]])", 3);
    CHECK_FALSE(r.ok());
    CHECK_THAT(r.error, Catch::Contains("nested deeper than 3"));
    CHECK(parse_untrusted_json(R"(["a\\", [[[[[1]]]]]])", 6).ok());
  }
  SECTION("several backslashes in a row") {
    auto r = parse_untrusted_json(R"(["\\\\\"[[[[", [[1]]])", 3);
    REQUIRE(r.ok());
    CHECK(r.value[0].get<std::string>() == "\\\\\"[[[[");
  }
}

TEST_CASE("malformed json gives an error sentence and never throws") {
  const std::vector<std::string> bad = {
      "",
      " ",
      "{",
      "}",
      "]]]]",
      "[1,]",
      "{\"a\":}",
      "{\"a\" 1}",
      "nul",
      "tru",
      "\"unterminated",
      "{\"a\":1} trailing",
      "'single'",
      "\xff",
      "{\"a\":\"\xff\xfe\"}",
      "{\"a\":\"\xc3\"}",
      "[\"\\ud800\"]",  // lone surrogate escape
      "1e400",          // number overflow
      "-1e400",
      "[1e999999]",
      "{\"left\":1e400}",
      std::string("{\"a\":\0}", 7),
  };
  for (const auto& text : bad) {
    INFO("input: " << text);
    swarmcoord::protocol::json_parse_result r;
    REQUIRE_NOTHROW(r = parse_untrusted_json(text));
    CHECK_FALSE(r.ok());
    CHECK_FALSE(r.error.empty());
    // Only the sentence, without nlohmann's "[json.exception.…] " prefix.
    CHECK(r.error.find("[json.exception") == std::string::npos);
  }
}

TEST_CASE("random byte soup never makes parse_untrusted_json throw") {
  std::mt19937 rng(20240601);
  const std::string alphabet = "[]{}\":,\\0123456789eE+-.tfnul \x80\xc3\xff";
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  std::uniform_int_distribution<int> length(0, 80);
  for (int i = 0; i < 5000; ++i) {
    std::string text;
    for (int n = length(rng); n > 0; --n) text.push_back(alphabet[pick(rng)]);
    INFO("input: " << text);
    REQUIRE_NOTHROW(parse_untrusted_json(text, 8));
  }
}

TEST_CASE("well-formed json parses to the expected value") {
  auto r = parse_untrusted_json(R"({"action":"announce","numwant":5,"offers":[{"offer_id":"x"}],"left":0})");
  REQUIRE(r.ok());
  CHECK(r.value["action"] == "announce");
  CHECK(r.value["numwant"] == 5);
  CHECK(r.value["offers"].size() == 1);
  CHECK(r.value["offers"][0]["offer_id"] == "x");
  CHECK(r.value["left"] == 0);

  auto scalar = parse_untrusted_json("  42 ");
  REQUIRE(scalar.ok());
  CHECK(scalar.value == 42);
}
