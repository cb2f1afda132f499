#include "protocol/native.hpp"

#include <charconv>

#include "protocol/json_limits.hpp"
#include "protocol/json_writer.hpp"
#include "protocol/swarm_url.hpp"

namespace swarmcoord::protocol::native {
namespace {

using nlohmann::json;
constexpr std::uint64_t max_exact_integer = 1ull << 53;  // what JavaScript clients can send
constexpr std::uint32_t max_client_neighbors = 1000;

struct decode_failure {
  error e;
};

[[noreturn]] void fail(error_code code, std::string message) {
  throw decode_failure{error{code, std::move(message), {}}};
}

const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::uint64_t unsigned_field(const json& obj, const char* key, std::uint64_t min, std::uint64_t max,
                             const char* type) {
  const json* v = field(obj, key);
  if (!v || !v->is_number_integer() || (v->is_number_integer() && !v->is_number_unsigned() && v->get<std::int64_t>() < 0))
    fail(error_code::invalid_field, std::string(type) + "." + key + " must be a non-negative integer");
  const auto n = v->get<std::uint64_t>();
  if (n < min || n > max)
    fail(error_code::invalid_field, std::string(type) + "." + key + " must be between " + std::to_string(min) +
                                        " and " + std::to_string(max));
  return n;
}

std::string swarm_field(const json& obj, const char* type) {
  const json* v = field(obj, "swarm");
  if (!v || !v->is_string()) fail(error_code::invalid_field, std::string(type) + ".swarm must be a string");
  auto key = normalize_swarm_url(v->get_ref<const std::string&>());
  if (!key) fail(error_code::bad_url, std::string(type) + ".swarm must be an http(s) URL without user info");
  return *key;
}

hello decode_hello(const json& obj) {
  hello h;
  if (const json* v = field(obj, "v"); v && !(v->is_number_integer() && v->get<std::int64_t>() == protocol_version))
    fail(error_code::unsupported_version, "this server speaks protocol version 1");
  if (const json* v = field(obj, "native")) {
    if (!v->is_boolean()) fail(error_code::invalid_field, "hello.native must be true or false");
    h.native = v->get<bool>();
  }
  if (field(obj, "max_neighbors"))
    h.max_neighbors = static_cast<std::uint32_t>(unsigned_field(obj, "max_neighbors", 1, max_client_neighbors, "hello"));
  return h;
}

join decode_join(const json& obj) {
  join j;
  j.swarm = swarm_field(obj, "join");
  j.size = unsigned_field(obj, "size", 1, max_exact_integer, "join");
  j.block_size = static_cast<std::uint32_t>(unsigned_field(obj, "block_size", 1024, 64ull << 20, "join"));
  if (const json* v = field(obj, "have")) {
    if (!v->is_string()) fail(error_code::invalid_field, "join.have must be \"all\" or a base64 bitfield");
    const auto& s = v->get_ref<const std::string&>();
    if (s == "all") {
      j.have = join::holding::all;
    } else {
      auto bytes = base64_decode(s);
      if (!bytes) fail(error_code::bad_base64, "join.have is not valid base64");
      j.have = join::holding::some;
      j.bitfield_bytes = std::move(*bytes);
    }
  }
  return j;
}

have decode_have(const json& obj, const decode_limits& limits) {
  have h;
  h.swarm = swarm_field(obj, "have");
  const json* v = field(obj, "blocks");
  if (!v || !v->is_array()) fail(error_code::invalid_field, "have.blocks must be an array of block indices");
  if (v->size() > limits.max_have_blocks)
    fail(error_code::invalid_field, "have.blocks lists more than " + std::to_string(limits.max_have_blocks) + " blocks");
  h.blocks.reserve(v->size());
  for (const auto& b : *v) {
    if (!b.is_number_unsigned() || b.get<std::uint64_t>() > 0xFFFFFFFFull)
      fail(error_code::invalid_field, "have.blocks must hold non-negative integers");
    h.blocks.push_back(static_cast<std::uint32_t>(b.get<std::uint64_t>()));
  }
  return h;
}

signal decode_signal(const json& obj, const decode_limits& limits) {
  signal s;
  s.swarm = swarm_field(obj, "signal");
  const json* to = field(obj, "to");
  if (!to || !to->is_string()) fail(error_code::invalid_field, "signal.to must be a peer id string");
  auto id = parse_peer_id(to->get_ref<const std::string&>());
  if (!id) fail(error_code::peer_not_found, "signal.to is not a peer id this server handed out");
  s.to = *id;
  const json* data = field(obj, "data");
  if (!data) fail(error_code::invalid_field, "signal.data is required");
  s.data = data->dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.data.size() > limits.max_signal_bytes)
    fail(error_code::signal_too_big, "signal.data is over " + std::to_string(limits.max_signal_bytes) + " bytes");
  if (data->is_object())
    if (auto t = data->find("type"); t != data->end() && t->is_string()) {
      const auto& type = t->get_ref<const std::string&>();
      if (type == "offer") s.kind = "offer";
      else if (type == "answer") s.kind = "answer";
      else if (type == "candidate") s.kind = "candidate";
    }
  return s;
}

report decode_report(const json& obj) {
  report r;
  r.swarm = swarm_field(obj, "report");
  // One report covers seconds of traffic; a petabyte is a lie, not a statistic.
  constexpr std::uint64_t max_delta = 1ull << 50;
  r.http_bytes = unsigned_field(obj, "http_bytes", 0, max_delta, "report");
  r.p2p_bytes = unsigned_field(obj, "p2p_bytes", 0, max_delta, "report");
  r.uploaded_bytes = unsigned_field(obj, "uploaded_bytes", 0, max_delta, "report");
  if (const json* bad = field(obj, "bad_peers")) {
    if (!bad->is_array() || bad->size() > max_bad_peers_per_report)
      fail(error_code::invalid_field, "report.bad_peers must be an array of at most " + std::to_string(max_bad_peers_per_report) + " peer ids");
    for (const auto& v : *bad) {
      std::optional<peer_id> id;
      if (v.is_string()) id = parse_peer_id(v.get_ref<const std::string&>());
      if (!id) fail(error_code::invalid_field, "report.bad_peers holds something that is not a peer id");
      r.bad_peers.push_back(*id);
    }
  }
  return r;
}

// ---- encoding ----
void append_string(std::string& out, std::string_view s) { append_json_string(out, s); }

struct encoder {
  std::string out;
  void operator()(const welcome& w) {
    out += R"({"type":"welcome","peer_id":")" + format_peer_id(w.id) + R"(","max_neighbors":)";
    append_uint(out, w.max_neighbors);
    out += R"(,"heartbeat_s":)";
    append_uint(out, w.heartbeat_s);
    out += R"(,"ice_servers":)" + w.ice_servers.dump(-1, ' ', false, json::error_handler_t::replace) + "}";
  }
  void operator()(const joined& j) {
    out += R"({"type":"joined","swarm":)";
    append_string(out, j.swarm);
    out += R"(,"blocks":)";
    append_uint(out, j.blocks);
    out += R"(,"peers":)";
    append_uint(out, j.peers);
    out += "}";
  }
  void operator()(const neighbors& n) {
    out += R"({"type":"neighbors","swarm":)";
    append_string(out, n.swarm);
    out += R"(,"add":[)";
    for (std::size_t i = 0; i < n.add.size(); ++i) {
      const auto& a = n.add[i];
      if (i) out += ',';
      out += R"({"peer_id":")" + format_peer_id(a.id) + R"(","initiator":)" + (a.initiator ? "true" : "false") +
             R"(,"locality":")" + std::string(to_string(a.where)) + R"(","have":)";
      append_uint(out, a.have);
      out += '}';
    }
    out += R"(],"remove":[)";
    for (std::size_t i = 0; i < n.remove.size(); ++i) {
      if (i) out += ',';
      out += '"' + format_peer_id(n.remove[i]) + '"';
    }
    out += "]}";
  }
  void operator()(const signal_relay& s) {
    out += R"({"type":"signal","swarm":)";
    append_string(out, s.swarm);
    out += R"(,"from":")" + format_peer_id(s.from) + R"(","data":)" + s.data + "}";
  }
  void operator()(const error& e) {
    out += R"({"type":"error","code":")" + std::string(to_string(e.code)) + R"(","message":)";
    append_string(out, e.message);
    if (!e.ref.empty()) {
      out += R"(,"ref":)";
      append_string(out, e.ref);
    }
    if (!e.swarm.empty()) {
      out += R"(,"swarm":)";
      append_string(out, e.swarm);
    }
    out += "}";
  }
};

}  // namespace

std::string_view to_string(error_code c) {
  static constexpr std::string_view names[] = {
      "bad_json", "unknown_type", "invalid_field", "unsupported_version", "hello_required", "already_hello",
      "bad_url", "bad_base64", "bad_bitfield", "block_out_of_range", "too_many_swarms", "too_many_blocks",
      "swarm_mismatch", "not_joined", "peer_not_found", "signal_too_big"};
  static_assert(std::size(names) == error_code_count);
  return names[static_cast<std::size_t>(c)];
}

std::string_view to_string(locality l) {
  static constexpr std::string_view names[] = {"site", "subnet", "asn", "country", "remote"};
  return names[static_cast<std::size_t>(l)];
}

std::string format_peer_id(peer_id id) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) out[static_cast<std::size_t>(i)] = hex[id & 0xF];
  return out;
}

std::optional<peer_id> parse_peer_id(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  peer_id id = 0;
  for (char c : text) {
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else return std::nullopt;
    id = (id << 4) | static_cast<peer_id>(v);
  }
  return id;
}

client_message decode_client_message(std::string_view text, const decode_limits& limits) {
  auto parsed = parse_untrusted_json(text);
  if (!parsed.ok()) return error{error_code::bad_json, "not valid JSON: " + parsed.error, {}};
  const json& obj = parsed.value;
  if (!obj.is_object()) return error{error_code::invalid_field, "a message must be a JSON object", {}};
  const json* type = field(obj, "type");
  if (!type || !type->is_string()) return error{error_code::invalid_field, "a message needs a string \"type\"", {}};
  const auto& name = type->get_ref<const std::string&>();
  try {
    if (name == "hello") return decode_hello(obj);
    if (name == "join") return decode_join(obj);
    if (name == "have") return decode_have(obj, limits);
    if (name == "leave") return leave{swarm_field(obj, "leave")};
    if (name == "signal") return decode_signal(obj, limits);
    if (name == "report") return decode_report(obj);
  } catch (decode_failure& f) {
    f.e.ref = name;
    return std::move(f.e);
  }
  const std::string shown = shorten_utf8(name, 32);
  return error{error_code::unknown_type, "unknown message type \"" + shown + "\"", shown};
}

std::string encode(const server_message& m) {
  encoder e;
  std::visit(e, m);
  return std::move(e.out);
}

std::string encode_hello(const hello& h) {
  json j = {{"type", "hello"}, {"v", protocol_version}, {"native", h.native}};
  if (h.max_neighbors) j["max_neighbors"] = *h.max_neighbors;
  return j.dump();
}

std::string encode_join(const join& j) {
  json o = {{"type", "join"}, {"swarm", j.swarm}, {"size", j.size}, {"block_size", j.block_size}};
  if (j.have == join::holding::all) o["have"] = "all";
  else if (j.have == join::holding::some) o["have"] = base64_encode(j.bitfield_bytes);
  return o.dump();
}

std::string encode_have(const have& h) { return json{{"type", "have"}, {"swarm", h.swarm}, {"blocks", h.blocks}}.dump(); }

std::string encode_leave(const leave& l) { return json{{"type", "leave"}, {"swarm", l.swarm}}.dump(); }

std::string encode_signal(const signal& s) {
  return json{{"type", "signal"}, {"swarm", s.swarm}, {"to", format_peer_id(s.to)}, {"data", json::parse(s.data)}}.dump();
}

std::string encode_report(const report& r) {
  json j{{"type", "report"}, {"swarm", r.swarm}, {"http_bytes", r.http_bytes}, {"p2p_bytes", r.p2p_bytes},
         {"uploaded_bytes", r.uploaded_bytes}};
  if (!r.bad_peers.empty()) {
    auto& bad = j["bad_peers"] = json::array();
    for (auto id : r.bad_peers) bad.push_back(format_peer_id(id));
  }
  return j.dump();
}

}  // namespace swarmcoord::protocol::native
