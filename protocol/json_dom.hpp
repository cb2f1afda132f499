#pragma once
// Reading received JSON with simdjson's DOM, shared by the WebTorrent and native decoders:
// one validating parse per message with a parser kept per thread, and parsed values written
// back out as minified text to relay. Internal to protocol/: the public headers stay free of
// simdjson. Thread-safe (each thread parses with its own parser).
#include <cstddef>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "protocol/json_text.hpp"

namespace swarmcoord::protocol {

// Parses and fully validates a message: syntax, UTF-8, integers within 64 bits and other
// numbers within a double's range, nesting up to default_max_json_depth. The result points
// into this thread's parser, so it is valid until this thread parses again.
simdjson::simdjson_result<simdjson::dom::element> parse_json(std::string_view text);

// Like parse_json, but integers beyond 64 bits are read as doubles, as JSON.parse reads every
// number, instead of failing the parse. As fast as parse_json unless such an integer occurs.
simdjson::simdjson_result<simdjson::dom::element> parse_json_wide_integers(std::string_view text);

// True when e nests more than `levels` containers deep (e counts when it is one). The parser
// does not count an innermost empty container, so 33 levels ending in [] or {} pass it; a
// decoder that must refuse those too asks this after parsing (a walk over the containers).
bool nested_deeper_than(simdjson::dom::element e, std::size_t levels);

// Why a text did not parse, as a sentence for the client.
std::string parse_error_message(simdjson::error_code err);

// A parsed value as minified JSON: keys in their order, duplicates kept, UTF-8 as is.
void append_json(std::string& out, simdjson::dom::element e);

// What the server relays: the value as minified text. `expected_bytes` is a first guess of
// its size, which saves regrowing the text.
json_text text_of(simdjson::dom::element e, std::size_t expected_bytes = 256);

}  // namespace swarmcoord::protocol
