#include "protocol/native.hpp"

#include "protocol/json_writer.hpp"

namespace swarmcoord::protocol::native {
namespace {

// ---- encoding: by hand, faster than building a value for every outgoing message

// Appends ,"name": — every key but an object's first.
void append_key(std::string& out, std::string_view name) {
  out.append(",\"").append(name).append("\":");
}

void append_peer_id(std::string& out, peer_id id) {
  out.push_back('"');
  out.append(format_peer_id(id));
  out.push_back('"');
}

// {"type":"<type>","swarm":<swarm>: the start of every message about one swarm.
std::string swarm_message(std::string_view type, std::string_view swarm, std::size_t expected_bytes = 128) {
  std::string out;
  out.reserve(expected_bytes + swarm.size());
  out.append(R"({"type":")").append(type).append(R"(","swarm":)");
  append_json_string(out, swarm);
  return out;
}

struct encoder {
  std::string out;
  void operator()(const welcome& w) {
    out = R"({"type":"welcome","peer_id":)";
    append_peer_id(out, w.id);
    append_key(out, "max_neighbors");
    append_uint(out, w.max_neighbors);
    append_key(out, "heartbeat_s");
    append_uint(out, w.heartbeat_s);
    append_key(out, "ice_servers");
    out.append(w.ice_servers.text).push_back('}');
  }
  void operator()(const joined& j) {
    out = swarm_message("joined", j.swarm);
    append_key(out, "blocks");
    append_uint(out, j.blocks);
    append_key(out, "peers");
    append_uint(out, j.peers);
    out.push_back('}');
  }
  void operator()(const neighbors& n) {
    out = swarm_message("neighbors", n.swarm, 128 + 96 * n.add.size() + 20 * n.remove.size());
    append_key(out, "add");
    append_array(out, n.add, [](std::string& o, const neighbor& a) {
      o.append(R"({"peer_id":)");
      append_peer_id(o, a.id);
      o.append(R"(,"initiator":)").append(a.initiator ? "true" : "false");
      o.append(R"(,"locality":")").append(to_string(a.where)).push_back('"');
      append_key(o, "have");
      append_uint(o, a.have);
      o.push_back('}');
    });
    append_key(out, "remove");
    append_array(out, n.remove, append_peer_id);
    out.push_back('}');
  }
  void operator()(const signal_relay& s) {
    out = swarm_message("signal", s.swarm, 64 + s.data.text.size());
    append_key(out, "from");
    append_peer_id(out, s.from);
    append_key(out, "data");
    out.append(s.data.text).push_back('}');
  }
  void operator()(const error& e) {
    out = R"({"type":"error","code":")";
    out.append(to_string(e.code)).push_back('"');
    append_key(out, "message");
    append_json_string(out, e.message);
    if (!e.ref.empty()) {
      append_key(out, "ref");
      append_json_string(out, e.ref);
    }
    if (!e.swarm.empty()) {
      append_key(out, "swarm");
      append_json_string(out, e.swarm);
    }
    out.push_back('}');
  }
};

}  // namespace

std::string_view to_string(error_code c) {
  static constexpr std::string_view names[] = {
      "bad_json", "unknown_type", "invalid_field", "unsupported_version", "hello_required", "already_hello",
      "bad_url", "bad_base64", "bad_bitfield", "block_out_of_range", "too_many_swarms", "too_many_blocks",
      "swarm_mismatch", "not_joined", "peer_not_found", "signal_too_big", "not_linked", "not_allowed",
      "server_full"};
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

std::string encode(const server_message& m) {
  encoder e;
  std::visit(e, m);
  return std::move(e.out);
}

// ---- client side: the keys in the order protocol/README.md shows them

std::string encode_hello(const hello& h) {
  std::string out = R"({"type":"hello")";
  append_key(out, "v");
  append_int(out, protocol_version);
  append_key(out, "native");
  out.append(h.native ? "true" : "false");
  if (h.max_neighbors) {
    append_key(out, "max_neighbors");
    append_uint(out, *h.max_neighbors);
  }
  out.push_back('}');
  return out;
}

std::string encode_join(const join& j) {
  std::string out = swarm_message("join", j.swarm, 128 + j.bitfield_bytes.size() * 4 / 3);
  append_key(out, "size");
  append_uint(out, j.size);
  append_key(out, "block_size");
  append_uint(out, j.block_size);
  if (j.have == join::holding::all) {
    out.append(R"(,"have":"all")");
  } else if (j.have == join::holding::some) {
    append_key(out, "have");
    append_json_string(out, base64_encode(j.bitfield_bytes));
  }
  out.push_back('}');
  return out;
}

std::string encode_have(const have& h) {
  std::string out = swarm_message("have", h.swarm, 64 + 11 * h.blocks.size());
  append_key(out, "blocks");
  append_array(out, h.blocks, [](std::string& o, std::uint32_t block) { append_uint(o, block); });
  out.push_back('}');
  return out;
}

std::string encode_leave(const leave& l) { return swarm_message("leave", l.swarm) + "}"; }

std::string encode_signal(const signal& s) {
  std::string out = swarm_message("signal", s.swarm, 64 + s.data.text.size());
  append_key(out, "to");
  append_peer_id(out, s.to);
  append_key(out, "data");
  out.append(s.data.text).push_back('}');
  return out;
}

std::string encode_report(const report& r) {
  std::string out = swarm_message("report", r.swarm);
  append_key(out, "http_bytes");
  append_uint(out, r.http_bytes);
  append_key(out, "p2p_bytes");
  append_uint(out, r.p2p_bytes);
  append_key(out, "uploaded_bytes");
  append_uint(out, r.uploaded_bytes);
  if (!r.bad_peers.empty()) {
    append_key(out, "bad_peers");
    append_array(out, r.bad_peers, append_peer_id);
  }
  out.push_back('}');
  return out;
}

}  // namespace swarmcoord::protocol::native
