#include "protocol/webtorrent.hpp"

#include <charconv>
#include <cmath>

#include "protocol/json_dom.hpp"
#include "protocol/json_escape.hpp"
#include "protocol/json_writer.hpp"

namespace swarmcoord::protocol::webtorrent {
namespace {

namespace dom = simdjson::dom;
using field = std::optional<dom::element>;

// ---- writing JSON by hand: faster than building a value for every outgoing message

// encode_binary_id, written straight out (every reply carries ids: no temporary string).
void append_id(std::string& out, const binary_id& id) {
  char utf8[2 * binary_id::size];
  std::size_t n = 0;
  for (std::uint8_t b : id.bytes) {
    if (b < 0x80) {
      utf8[n++] = static_cast<char>(b);
    } else {
      utf8[n++] = static_cast<char>(0xC0 | (b >> 6));
      utf8[n++] = static_cast<char>(0x80 | (b & 0x3F));
    }
  }
  append_escaped(out, std::string_view(utf8, n));
}

// ---- reading

std::optional<binary_id> id_of(const field& f) {
  std::string_view s;
  if (!f || f->get_string().get(s)) return std::nullopt;
  return decode_binary_id(s);
}

bool present(const field& f) { return f && !f->is_null(); }

std::optional<announce_event> parse_event(const field& f, bool& valid) {
  valid = true;
  if (!present(f)) return announce_event::none;
  std::string_view s;
  if (f->get_string().get(s)) { valid = false; return std::nullopt; }
  if (s == "started") return announce_event::started;
  if (s == "completed") return announce_event::completed;
  if (s == "stopped") return announce_event::stopped;
  if (s == "update") return announce_event::update;
  if (s == "paused") return announce_event::paused;
  if (s == "empty") return announce_event::empty;
  if (s == "none" || s.empty()) return announce_event::none;
  valid = false;
  return std::nullopt;
}

// Like the reference's Number(params.left): a number or a numeric string.
std::optional<double> parse_left(const field& f) {
  if (!f) return std::nullopt;
  double number = 0;
  if (!f->get_double().get(number)) return number;  // integers convert too
  std::string_view s;
  if (!f->get_string().get(s)) {
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && end == s.data() + s.size()) return v;
  }
  return std::nullopt;
}

// The top-level fields the decoder reads. Collected in one pass; a key given twice counts
// the last time, as with JSON.parse in the reference tracker.
struct request_fields {
  field action, info_hash, peer_id, to_peer_id, offer_id, answer, event, left, offers;

  explicit request_fields(dom::object obj) {
    for (dom::key_value_pair kv : obj) {
      const std::string_view k = kv.key;
      if (k == "action") action = kv.value;
      else if (k == "info_hash") info_hash = kv.value;
      else if (k == "peer_id") peer_id = kv.value;
      else if (k == "offers") offers = kv.value;
      else if (k == "event") event = kv.value;
      else if (k == "left") left = kv.value;
      else if (k == "answer") answer = kv.value;
      else if (k == "to_peer_id") to_peer_id = kv.value;
      else if (k == "offer_id") offer_id = kv.value;
    }
  }
};

request_error error(error_reason reason, std::string message,
                    std::optional<binary_id> info_hash = std::nullopt,
                    std::string_view action = "announce") {
  return request_error{reason, std::move(message), info_hash, action};
}

// An offers entry to relay, or nullopt for one nobody could answer. The reference client's
// own tests send {"fake_offer": …}: such entries are skipped, the announce still accepted.
std::optional<offer> offer_of(dom::element entry) {
  dom::object obj;
  if (entry.get_object().get(obj)) return std::nullopt;
  field offer_id, sdp;
  for (dom::key_value_pair kv : obj) {
    if (kv.key == "offer_id") offer_id = kv.value;
    else if (kv.key == "offer") sdp = kv.value;
  }
  auto id = id_of(offer_id);
  if (!id || !sdp || !sdp->is_object()) return std::nullopt;
  return offer{*id, text_of(*sdp)};
}

client_message decode_announce(const request_fields& f) {
  auto info_hash = id_of(f.info_hash);
  if (!info_hash) return error(error_reason::invalid_info_hash, "invalid info_hash");
  auto peer_id = id_of(f.peer_id);
  if (!peer_id) return error(error_reason::invalid_peer_id, "invalid peer_id", info_hash);

  if (present(f.answer)) {
    auto to_peer_id = id_of(f.to_peer_id);
    if (!to_peer_id)
      return error(error_reason::invalid_to_peer_id,
                   "invalid `to_peer_id` (required with `answer`)", info_hash);
    auto offer_id = id_of(f.offer_id);
    if (!offer_id)
      return error(error_reason::invalid_offer_id,
                   "invalid `offer_id` (required with `answer`)", info_hash);
    if (!f.answer->is_object())
      return error(error_reason::invalid_offer_id, "invalid `answer` (must be an object)",
                   info_hash);
    return answer{*info_hash, *peer_id, *to_peer_id, *offer_id, text_of(*f.answer)};
  }

  bool event_valid = true;
  auto event = parse_event(f.event, event_valid);
  if (!event_valid) return error(error_reason::invalid_event, "invalid event", info_hash);

  announce a;
  a.info_hash = *info_hash;
  a.peer_id = *peer_id;
  a.event = *event;
  a.left = parse_left(f.left);
  dom::array offers;
  if (f.offers && !f.offers->get_array().get(offers)) {
    a.offers.reserve(offers.size());
    for (dom::element entry : offers) {
      if (auto o = offer_of(entry)) a.offers.push_back(std::move(*o));
      else ++a.offers_skipped;
    }
  }
  return a;
}

client_message decode_scrape(const request_fields& f) {
  scrape s;
  if (!present(f.info_hash)) {
    s.all = true;
    return s;
  }
  auto add = [&](dom::element v) {
    std::string_view text;
    if (v.get_string().get(text)) return false;
    auto id = decode_binary_id(text);
    if (!id) return false;
    s.info_hashes.push_back(*id);
    return true;
  };
  dom::array list;
  if (!f.info_hash->get_array().get(list)) {
    if (list.size() > max_scrape_info_hashes)
      return error(error_reason::too_many_info_hashes,
                   "too many info_hash values in one scrape (at most " +
                       std::to_string(max_scrape_info_hashes) + ")",
                   std::nullopt, "scrape");
    for (dom::element v : list)
      if (!add(v)) return error(error_reason::invalid_info_hash, "invalid info_hash", {}, "scrape");
  } else if (!add(*f.info_hash)) {
    return error(error_reason::invalid_info_hash, "invalid info_hash", {}, "scrape");
  }
  return s;
}

struct encoder {
  // Room for a relay's keys and three ids besides the SDP, so that it is built in one go.
  static constexpr std::size_t relay_overhead = 192;
  std::string out;

  void operator()(const announce_response& r) {
    out.reserve(160);
    out.append(R"({"action":"announce","interval":)");
    append_uint(out, r.interval_s);
    out.append(R"(,"info_hash":)");
    append_id(out, r.info_hash);
    out.append(R"(,"complete":)");
    append_uint(out, r.complete);
    out.append(R"(,"incomplete":)");
    append_uint(out, r.incomplete);
    out.push_back('}');
  }
  void operator()(const offer_relay& r) {
    out.reserve(r.sdp.text.size() + relay_overhead);
    out.append(R"({"action":"announce","offer":)");
    out.append(r.sdp.text);
    out.append(R"(,"offer_id":)");
    append_id(out, r.offer_id);
    out.append(R"(,"peer_id":)");
    append_id(out, r.peer_id);
    out.append(R"(,"info_hash":)");
    append_id(out, r.info_hash);
    out.push_back('}');
  }
  void operator()(const answer_relay& r) {
    out.reserve(r.sdp.text.size() + relay_overhead);
    out.append(R"({"action":"announce","answer":)");
    out.append(r.sdp.text);
    out.append(R"(,"offer_id":)");
    append_id(out, r.offer_id);
    out.append(R"(,"peer_id":)");
    append_id(out, r.peer_id);
    out.append(R"(,"info_hash":)");
    append_id(out, r.info_hash);
    out.push_back('}');
  }
  void operator()(const scrape_response& r) {
    out.append(R"({"action":"scrape","files":{)");
    bool first = true;
    for (const auto& f : r.files) {
      if (!first) out.push_back(',');
      first = false;
      append_id(out, f.info_hash);
      out.append(R"(:{"complete":)");
      append_uint(out, f.complete);
      out.append(R"(,"incomplete":)");
      append_uint(out, f.incomplete);
      out.append(R"(,"downloaded":)");
      append_uint(out, f.downloaded);
      out.push_back('}');
    }
    out.append(R"(},"flags":{"min_request_interval":600}})");
  }
  void operator()(const request_error& e) {
    // With a known info_hash the client only warns and keeps its socket; without one it
    // treats the reply as a socket error, so that shape is kept for requests it can't route.
    out.push_back('{');
    if (e.info_hash) {
      out.append(R"("action":)");
      append_escaped(out, e.action);
      out.append(R"(,"info_hash":)");
      append_id(out, *e.info_hash);
      out.push_back(',');
    }
    out.append(R"("failure reason":)");
    // The message may quote the request (a parser error, the action): never echo invalid UTF-8.
    append_json_string(out, e.message);
    out.push_back('}');
  }
};

}  // namespace

std::string_view to_string(error_reason r) {
  switch (r) {
    case error_reason::bad_json: return "bad_json";
    case error_reason::not_an_object: return "not_an_object";
    case error_reason::invalid_action: return "invalid_action";
    case error_reason::invalid_info_hash: return "invalid_info_hash";
    case error_reason::invalid_peer_id: return "invalid_peer_id";
    case error_reason::invalid_to_peer_id: return "invalid_to_peer_id";
    case error_reason::invalid_offer_id: return "invalid_offer_id";
    case error_reason::invalid_event: return "invalid_event";
    case error_reason::too_many_info_hashes: return "too_many_info_hashes";
    case error_reason::too_many_peers: return "too_many_peers";
    case error_reason::peer_id_in_use: return "peer_id_in_use";
    case error_reason::not_allowed: return "not_allowed";
    case error_reason::server_full: return "server_full";
  }
  return "unknown";
}

client_message decode_client_message(std::string_view text) {
  dom::element root;
  if (auto err = parse_json(text).get(root)) return error(error_reason::bad_json, parse_error_message(err), {}, "");
  dom::object obj;
  if (root.get_object().get(obj))
    return error(error_reason::not_an_object, "invalid action in WS request: undefined", {}, "");
  const request_fields fields(obj);
  std::string_view name;
  const bool is_string = fields.action && !fields.action->get_string().get(name);
  if (is_string && name == "announce") return decode_announce(fields);
  if (is_string && name == "scrape") return decode_scrape(fields);
  const std::string shown = !fields.action ? "undefined"
                            : is_string    ? std::string(name)
                                           : text_of(*fields.action).text;
  return error(error_reason::invalid_action, "invalid action in WS request: " + shorten_utf8(shown, 64),
               {}, "");
}

std::string_view type_name(const server_message& m) { return server_type_names[m.index()]; }

std::string encode(const server_message& m) {
  encoder e;
  std::visit(e, m);
  return std::move(e.out);
}

std::string encode_announce(const announce& a) {
  std::string out = R"({"action":"announce","info_hash":)";
  append_id(out, a.info_hash);
  out.append(R"(,"peer_id":)");
  append_id(out, a.peer_id);
  out.append(R"(,"numwant":)");
  append_uint(out, a.offers.size());
  out.append(R"(,"uploaded":0,"downloaded":0)");
  static constexpr const char* events[] = {nullptr,  "started", "completed", "stopped",
                                           "update", "paused",  "empty"};
  if (auto name = events[static_cast<int>(a.event)]) {
    out.append(R"(,"event":")");
    out.append(name);
    out.push_back('"');
  }
  if (a.left) {
    out.append(R"(,"left":)");
    // JSON has no infinities or NaN, and null would read back as no left at all; these strings
    // read back the same here (parse_left) and in JavaScript (Number("Infinity")).
    if (std::isfinite(*a.left)) append_double(out, *a.left);
    else out.append(std::isnan(*a.left) ? R"("NaN")" : *a.left > 0 ? R"("Infinity")" : R"("-Infinity")");
  }
  if (!a.offers.empty()) {
    out.append(R"(,"offers":)");
    append_array(out, a.offers, [](std::string& o, const offer& entry) {
      o.append(R"({"offer":)");
      o.append(entry.sdp.text);
      o.append(R"(,"offer_id":)");
      append_id(o, entry.offer_id);
      o.push_back('}');
    });
  }
  out.push_back('}');
  return out;
}

std::string encode_answer(const answer& a) {
  std::string out = R"({"action":"announce","info_hash":)";
  append_id(out, a.info_hash);
  out.append(R"(,"peer_id":)");
  append_id(out, a.peer_id);
  out.append(R"(,"to_peer_id":)");
  append_id(out, a.to_peer_id);
  out.append(R"(,"offer_id":)");
  append_id(out, a.offer_id);
  out.append(R"(,"answer":)");
  out.append(a.sdp.text);
  out.push_back('}');
  return out;
}

std::string encode_scrape(const scrape& s) {
  std::string out = R"({"action":"scrape")";
  if (!s.all) {
    out.append(R"(,"info_hash":)");
    append_array(out, s.info_hashes, append_id);
  }
  out.push_back('}');
  return out;
}

}  // namespace swarmcoord::protocol::webtorrent
