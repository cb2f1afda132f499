#pragma once
// A JSON value kept as its text: what the server passes between peers without looking inside
// (the SDP offers and answers of WebTorrent, the data of native signals). Relaying it is then one append, where a parsed
// value would be built for every message and serialized again for every recipient.
// Value type; thread-safe as a value.
#include <cstddef>
#include <string>

namespace swarmcoord::protocol {

// The deepest nesting of objects and arrays the decoders accept in a received message: what
// bounds the recursion of everything that walks a parsed value.
inline constexpr std::size_t default_max_json_depth = 32;

struct json_text {
  // One complete, valid JSON value (the decoders store it minified). Encoders copy it out
  // unchecked, so text from anywhere but a decoder must be valid JSON too.
  std::string text;

  friend bool operator==(const json_text&, const json_text&) = default;
};

}  // namespace swarmcoord::protocol
