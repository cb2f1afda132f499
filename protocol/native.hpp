#pragma once
// Native protocol v1 (ws://HOST/v1/ws): JSON text frames, one object with "type" each.
// protocol/README.md is the specification. Decoding never throws: hostile input yields an
// `error` naming the problem, which the server sends back. Pure; thread-safe.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/bitfield.hpp"
#include "protocol/json_text.hpp"

namespace swarmcoord::protocol::native {

inline constexpr int protocol_version = 1;

// Error codes are metric label values and part of the wire contract.
enum class error_code : std::uint8_t {
  bad_json, unknown_type, invalid_field, unsupported_version, hello_required, already_hello,
  bad_url, bad_base64, bad_bitfield, block_out_of_range, too_many_swarms, too_many_blocks,
  swarm_mismatch, not_joined, peer_not_found, signal_too_big, not_linked, not_allowed, server_full,
};
inline constexpr std::size_t error_code_count = 19;
std::string_view to_string(error_code c);

// A peer id as the server hands it out: 16 lower-case hex digits.
using peer_id = std::uint64_t;
std::string format_peer_id(peer_id id);
std::optional<peer_id> parse_peer_id(std::string_view text);

// ---- client -> server ----
struct hello {
  bool native = false;
  std::optional<std::uint32_t> max_neighbors;
};

struct join {
  std::string swarm;  // normalized URL
  std::uint64_t size = 0;
  std::uint32_t block_size = 0;
  enum class holding : std::uint8_t { none, all, some } have = holding::none;
  std::string bitfield_bytes;  // decoded base64 when have == some; length checked by the swarm
};

struct have {
  std::string swarm;
  std::vector<std::uint32_t> blocks;
};

struct leave {
  std::string swarm;
};

struct signal {
  std::string swarm;
  peer_id to = 0;
  json_text data;  // the opaque "data" value, minified (keys in their order, duplicates kept)
  std::string_view kind = "other";  // data.type when offer, answer or candidate (a metric label)
};

struct report {
  std::string swarm;
  std::uint64_t http_bytes = 0;
  std::uint64_t p2p_bytes = 0;
  std::uint64_t uploaded_bytes = 0;
  std::vector<peer_id> bad_peers;  // neighbours that sent blocks failing the manifest
};
inline constexpr std::size_t max_bad_peers_per_report = 16;

struct error {
  error_code code;
  std::string message;  // a human sentence
  std::string ref;      // the type of the message that caused it, when known
  std::string swarm;    // the swarm key it concerns, when known
};

using client_message = std::variant<hello, join, have, leave, signal, report, error>;
// Index of each alternative, for metric labels.
inline constexpr std::string_view client_type_names[] = {"hello", "join", "have", "leave", "signal", "report", "invalid"};

struct decode_limits {
  std::size_t max_signal_bytes = 16 * 1024;
  std::size_t max_have_blocks = 65536;  // indices in one have message
};

// Validates the whole text first (syntax, UTF-8, numbers within a double's range, nesting up
// to default_max_json_depth): anything else is bad_json. Integers beyond 64 bits are read as
// doubles; a key given twice counts the last time, as with JSON.parse; a null field counts as
// absent.
client_message decode_client_message(std::string_view text, const decode_limits& limits);

// ---- server -> client ----
struct welcome {
  peer_id id = 0;
  std::uint32_t max_neighbors = 0;
  std::uint32_t heartbeat_s = 0;
  json_text ice_servers{"[]"};  // a JSON array of RTCIceServer objects
};

struct joined {
  std::string swarm;
  std::uint32_t blocks = 0;
  std::uint32_t peers = 0;
};

enum class locality : std::uint8_t { site, subnet, asn, country, remote };
inline constexpr std::size_t locality_count = 5;
std::string_view to_string(locality l);

struct neighbor {
  peer_id id = 0;
  bool initiator = false;
  locality where = locality::remote;
  std::uint32_t have = 0;
};

struct neighbors {
  std::string swarm;
  std::vector<neighbor> add;
  std::vector<peer_id> remove;
};

struct signal_relay {
  std::string swarm;
  peer_id from = 0;
  json_text data;  // as the sender's signal carried it
};

using server_message = std::variant<welcome, joined, neighbors, signal_relay, error>;
inline constexpr std::string_view server_type_names[] = {"welcome", "joined", "neighbors", "signal", "error"};

std::string encode(const server_message& m);

// Client-side encoders, for tests, tools and the load generator.
std::string encode_hello(const hello& h);
std::string encode_join(const join& j);  // j.swarm is sent as the URL
std::string encode_have(const have& h);
std::string encode_leave(const leave& l);
std::string encode_signal(const signal& s);
std::string encode_report(const report& r);

}  // namespace swarmcoord::protocol::native
