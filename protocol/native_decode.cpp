// Decoding of the native protocol's client messages (protocol/native.hpp): one validating
// simdjson parse, then each message's fields read and checked. Errors are returned, never
// thrown: a decoder stops at the first and hands it back.
#include "protocol/native.hpp"

#include "protocol/json_dom.hpp"
#include "protocol/json_writer.hpp"
#include "protocol/swarm_url.hpp"

namespace swarmcoord::protocol::native {
namespace {

namespace dom = simdjson::dom;
using field = std::optional<dom::element>;  // a value given, and not null

constexpr std::uint64_t max_exact_integer = 1ull << 53;  // what JavaScript clients can send
constexpr std::uint32_t max_client_neighbors = 1000;

error invalid(std::string message) { return error{error_code::invalid_field, std::move(message), {}}; }

// A value read from a field, or the error that answers the message.
template <class T>
class checked {
 public:
  checked(T value) : result_(std::move(value)) {}
  checked(error e) : result_(std::move(e)) {}
  explicit operator bool() const { return result_.index() == 0; }
  T& operator*() { return std::get<0>(result_); }
  const error& failure() const { return std::get<1>(result_); }

 private:
  std::variant<T, error> result_;
};

// The top-level fields the decoders read, collected in one pass. A key given twice counts the
// last time, as with JSON.parse in a browser; null counts as absent, so {"have":null} is no have.
struct message_fields {
  field type, swarm, v, native, max_neighbors, size, block_size, have, blocks, to, data, http_bytes,
      p2p_bytes, uploaded_bytes, bad_peers;

  explicit message_fields(dom::object obj) {
    for (dom::key_value_pair kv : obj)
      if (field* f = slot(kv.key)) *f = kv.value.is_null() ? field{} : field{kv.value};
  }

 private:
  field* slot(std::string_view key) {
    if (key == "type") return &type;
    if (key == "swarm") return &swarm;
    if (key == "blocks") return &blocks;
    if (key == "to") return &to;
    if (key == "data") return &data;
    if (key == "have") return &have;
    if (key == "size") return &size;
    if (key == "block_size") return &block_size;
    if (key == "http_bytes") return &http_bytes;
    if (key == "p2p_bytes") return &p2p_bytes;
    if (key == "uploaded_bytes") return &uploaded_bytes;
    if (key == "bad_peers") return &bad_peers;
    if (key == "v") return &v;
    if (key == "native") return &native;
    if (key == "max_neighbors") return &max_neighbors;
    return nullptr;
  }
};

// `name` is the field as the client knows it, e.g. "join.size".
checked<std::uint64_t> unsigned_field(const field& f, std::string_view name, std::uint64_t min, std::uint64_t max) {
  std::uint64_t n = 0;
  // Fails for doubles (1.0 too, and integers beyond 64 bits, which arrive as doubles) and for
  // negative integers. (-0 reads as 0.)
  if (!f || f->get_uint64().get(n)) return invalid(std::string(name) + " must be a non-negative integer");
  if (n < min || n > max)
    return invalid(std::string(name) + " must be between " + std::to_string(min) + " and " + std::to_string(max));
  return n;
}

checked<std::string> swarm_field(const field& f, std::string_view type) {
  std::string_view url;
  if (!f || f->get_string().get(url)) return invalid(std::string(type) + ".swarm must be a string");
  auto key = normalize_swarm_url(url);
  if (!key) return error{error_code::bad_url, std::string(type) + ".swarm must be an http(s) URL without user info", {}};
  return std::move(*key);
}

client_message decode_hello(const message_fields& f) {
  hello h;
  std::int64_t version = 0;
  if (f.v && (f.v->get_int64().get(version) || version != protocol_version))
    return error{error_code::unsupported_version, "this server speaks protocol version 1", {}};
  if (f.native && f.native->get_bool().get(h.native)) return invalid("hello.native must be true or false");
  if (f.max_neighbors) {
    auto n = unsigned_field(f.max_neighbors, "hello.max_neighbors", 1, max_client_neighbors);
    if (!n) return n.failure();
    h.max_neighbors = static_cast<std::uint32_t>(*n);
  }
  return h;
}

client_message decode_join(const message_fields& f) {
  join j;
  auto swarm = swarm_field(f.swarm, "join");
  if (!swarm) return swarm.failure();
  j.swarm = std::move(*swarm);
  auto size = unsigned_field(f.size, "join.size", 1, max_exact_integer);
  if (!size) return size.failure();
  j.size = *size;
  auto block_size = unsigned_field(f.block_size, "join.block_size", 1024, 64ull << 20);
  if (!block_size) return block_size.failure();
  j.block_size = static_cast<std::uint32_t>(*block_size);
  if (f.have) {
    std::string_view have;
    if (f.have->get_string().get(have)) return invalid("join.have must be \"all\" or a base64 bitfield");
    if (have == "all") {
      j.have = join::holding::all;
    } else {
      auto bytes = base64_decode(have);
      if (!bytes) return error{error_code::bad_base64, "join.have is not valid base64", {}};
      j.have = join::holding::some;
      j.bitfield_bytes = std::move(*bytes);
    }
  }
  return j;
}

client_message decode_have(const message_fields& f, const decode_limits& limits) {
  have h;
  auto swarm = swarm_field(f.swarm, "have");
  if (!swarm) return swarm.failure();
  h.swarm = std::move(*swarm);
  dom::array blocks;
  if (!f.blocks || f.blocks->get_array().get(blocks)) return invalid("have.blocks must be an array of block indices");
  if (blocks.size() > limits.max_have_blocks)
    return invalid("have.blocks lists more than " + std::to_string(limits.max_have_blocks) + " blocks");
  h.blocks.reserve(blocks.size());
  for (dom::element b : blocks) {
    std::uint64_t index = 0;
    if (b.get_uint64().get(index) || index > 0xFFFFFFFFull) return invalid("have.blocks must hold non-negative integers");
    h.blocks.push_back(static_cast<std::uint32_t>(index));
  }
  return h;
}

// data.type when it is one the metrics count; the last "type" counts, as for the fields.
std::string_view signal_kind(dom::element data) {
  dom::object obj;
  if (data.get_object().get(obj)) return "other";
  field type;
  for (dom::key_value_pair kv : obj)
    if (kv.key == "type") type = kv.value;
  std::string_view name;
  if (!type || type->get_string().get(name)) return "other";
  for (std::string_view kind : {"offer", "answer", "candidate"})
    if (name == kind) return kind;
  return "other";
}

// `frame_bytes`, the size of the whole message, bounds the data's size but for a few
// numbers written longer (1E2 is 100.0): one allocation for its text.
client_message decode_signal(const message_fields& f, const decode_limits& limits, std::size_t frame_bytes) {
  signal s;
  auto swarm = swarm_field(f.swarm, "signal");
  if (!swarm) return swarm.failure();
  s.swarm = std::move(*swarm);
  std::string_view to;
  if (!f.to || f.to->get_string().get(to)) return invalid("signal.to must be a peer id string");
  auto id = parse_peer_id(to);
  if (!id) return error{error_code::peer_not_found, "signal.to is not a peer id this server handed out", {}};
  s.to = *id;
  if (!f.data) return invalid("signal.data is required");
  s.data = text_of(*f.data, frame_bytes);
  if (s.data.text.size() > limits.max_signal_bytes)
    return error{error_code::signal_too_big, "signal.data is over " + std::to_string(limits.max_signal_bytes) + " bytes", {}};
  s.kind = signal_kind(*f.data);
  return s;
}

client_message decode_leave(const message_fields& f) {
  auto swarm = swarm_field(f.swarm, "leave");
  if (!swarm) return swarm.failure();
  return leave{std::move(*swarm)};
}

client_message decode_report(const message_fields& f) {
  report r;
  auto swarm = swarm_field(f.swarm, "report");
  if (!swarm) return swarm.failure();
  r.swarm = std::move(*swarm);
  // One report covers seconds of traffic; a petabyte is a lie, not a statistic.
  constexpr std::uint64_t max_delta = 1ull << 50;
  struct count {
    const field& given;
    std::string_view name;
    std::uint64_t& out;
  };
  for (const count& c : {count{f.http_bytes, "report.http_bytes", r.http_bytes}, count{f.p2p_bytes, "report.p2p_bytes", r.p2p_bytes},
                         count{f.uploaded_bytes, "report.uploaded_bytes", r.uploaded_bytes}}) {
    auto n = unsigned_field(c.given, c.name, 0, max_delta);
    if (!n) return n.failure();
    c.out = *n;
  }
  if (f.bad_peers) {
    dom::array bad;
    if (f.bad_peers->get_array().get(bad) || bad.size() > max_bad_peers_per_report)
      return invalid("report.bad_peers must be an array of at most " + std::to_string(max_bad_peers_per_report) + " peer ids");
    for (dom::element v : bad) {
      std::string_view text;
      std::optional<peer_id> id;
      if (!v.get_string().get(text)) id = parse_peer_id(text);
      if (!id) return invalid("report.bad_peers holds something that is not a peer id");
      r.bad_peers.push_back(*id);
    }
  }
  return r;
}

}  // namespace

client_message decode_client_message(std::string_view text, const decode_limits& limits) {
  // A byte order mark is no JSON, and no browser sends one; but this decoder has always
  // skipped one, and a client written against that keeps working.
  constexpr std::string_view byte_order_mark = "\xEF\xBB\xBF";
  if (text.starts_with(byte_order_mark)) text.remove_prefix(byte_order_mark.size());
  dom::element root;
  if (auto err = parse_json_wide_integers(text).get(root))
    return error{error_code::bad_json, "not valid JSON: " + parse_error_message(err), {}};
  // The parser lets 33 levels through when the innermost is empty; this protocol has always
  // refused every 33rd level.
  if (nested_deeper_than(root, default_max_json_depth))
    return error{error_code::bad_json, "not valid JSON: " + parse_error_message(simdjson::DEPTH_ERROR), {}};
  dom::object obj;
  if (root.get_object().get(obj)) return invalid("a message must be a JSON object");
  const message_fields fields(obj);
  std::string_view name;
  if (!fields.type || fields.type->get_string().get(name)) return invalid("a message needs a string \"type\"");

  client_message m;
  if (name == "hello") m = decode_hello(fields);
  else if (name == "join") m = decode_join(fields);
  else if (name == "have") m = decode_have(fields, limits);
  else if (name == "signal") m = decode_signal(fields, limits, text.size());
  else if (name == "leave") m = decode_leave(fields);
  else if (name == "report") m = decode_report(fields);
  else {
    const std::string shown = shorten_utf8(name, 32);
    return error{error_code::unknown_type, "unknown message type \"" + shown + "\"", shown};
  }
  if (auto* e = std::get_if<error>(&m)) e->ref = name;
  return m;
}

}  // namespace swarmcoord::protocol::native
