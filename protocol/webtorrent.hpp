#pragma once
// The WebTorrent WebSocket tracker protocol (as spoken by bittorrent-tracker, WebTorrent and
// p2p-media-loader): message structs and their JSON codec. Decoding never throws: hostile
// input yields a request_error carrying the reference client-visible message.
// Pure; thread-safe (decoding reuses one parser per thread).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "protocol/binary_id.hpp"
#include "protocol/json_text.hpp"

namespace swarmcoord::protocol::webtorrent {

enum class announce_event : std::uint8_t { none, started, completed, stopped, update, paused, empty };

struct offer {
  binary_id offer_id;
  json_text sdp;  // the "offer" object, minified, relayed as it is
};

struct announce {
  binary_id info_hash;
  binary_id peer_id;
  announce_event event = announce_event::none;
  std::optional<double> left;  // absent unless the app supplies it; 0 means seeder
  std::vector<offer> offers;   // the relayable ones, in order
  std::size_t offers_skipped = 0;  // entries without a valid offer object or offer_id
};

struct answer {
  binary_id info_hash;
  binary_id peer_id;     // the answerer
  binary_id to_peer_id;  // the offerer
  binary_id offer_id;
  json_text sdp;         // the "answer" object, minified, relayed as it is
};

struct scrape {
  std::vector<binary_id> info_hashes;  // empty together with all == true: every swarm
  bool all = false;
};

// Reasons are metric label values: a closed, low-cardinality set. peer_id_in_use is the
// tracker's (an announce of a peer_id another open connection holds); the rest the codec's and
// the session's.
enum class error_reason : std::uint8_t {
  bad_json, not_an_object, invalid_action, invalid_info_hash, invalid_peer_id,
  invalid_to_peer_id, invalid_offer_id, invalid_event, too_many_info_hashes, too_many_peers,
  peer_id_in_use, not_allowed, server_full,
};
inline constexpr std::size_t error_reason_count = 13;
std::string_view to_string(error_reason r);

struct request_error {
  error_reason reason;
  std::string message;                 // the reference tracker's text where it has one
  std::optional<binary_id> info_hash;  // known: the warning shape that keeps the socket
  std::string_view action = "announce";
};

using client_message = std::variant<announce, answer, scrape, request_error>;
// Metric label of each alternative, by index.
inline constexpr std::string_view client_type_names[] = {"announce", "answer", "scrape", "invalid"};

inline constexpr std::size_t max_scrape_info_hashes = 256;

// Validates the whole text first (syntax, UTF-8, integers within 64 bits and other numbers
// within a double's range, nesting up to default_max_json_depth): anything else is bad_json. A key given twice counts the last
// time, as with JSON.parse in the reference tracker.
client_message decode_client_message(std::string_view text);

// ---- server -> client ----
struct announce_response {
  binary_id info_hash;
  std::uint32_t complete = 0;
  std::uint32_t incomplete = 0;
  std::uint32_t interval_s = 120;
};

struct offer_relay {
  binary_id info_hash;
  binary_id peer_id;  // the offerer
  binary_id offer_id;
  json_text sdp;
};

struct answer_relay {
  binary_id info_hash;
  binary_id peer_id;  // the answerer
  binary_id offer_id;
  json_text sdp;
};

struct scrape_file {
  binary_id info_hash;
  std::uint32_t complete = 0;
  std::uint32_t incomplete = 0;
  std::uint64_t downloaded = 0;
};

struct scrape_response {
  std::vector<scrape_file> files;
};

using server_message =
    std::variant<announce_response, offer_relay, answer_relay, scrape_response, request_error>;
inline constexpr std::string_view server_type_names[] = {"announce", "offer", "answer", "scrape", "error"};

// Metric label of a server message: announce, offer, answer, scrape, error.
std::string_view type_name(const server_message& m);

std::string encode(const server_message& m);

// Encoders for the client side of the protocol, used by tests and the load generator.
std::string encode_announce(const announce& a);
std::string encode_answer(const answer& a);
std::string encode_scrape(const scrape& s);

}  // namespace swarmcoord::protocol::webtorrent
