#include "protocol/webtorrent.hpp"

#include <charconv>

#include "protocol/json_limits.hpp"
#include "protocol/json_writer.hpp"

namespace swarmcoord::protocol::webtorrent {
namespace {

using nlohmann::json;

std::optional<binary_id> id_field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return decode_binary_id(it->get_ref<const std::string&>());
}

bool present(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && !it->is_null();
}

std::optional<announce_event> parse_event(const json& obj, bool& valid) {
  valid = true;
  auto it = obj.find("event");
  if (it == obj.end() || it->is_null()) return announce_event::none;
  if (!it->is_string()) { valid = false; return std::nullopt; }
  const auto& s = it->get_ref<const std::string&>();
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
std::optional<double> parse_left(const json& obj) {
  auto it = obj.find("left");
  if (it == obj.end()) return std::nullopt;
  if (it->is_number()) return it->get<double>();
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    double v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && end == s.data() + s.size()) return v;
  }
  return std::nullopt;
}

request_error error(error_reason reason, std::string message,
                    std::optional<binary_id> info_hash = std::nullopt,
                    std::string_view action = "announce") {
  return request_error{reason, std::move(message), info_hash, action};
}

client_message decode_announce(json& obj) {
  auto info_hash = id_field(obj, "info_hash");
  if (!info_hash) return error(error_reason::invalid_info_hash, "invalid info_hash");
  auto peer_id = id_field(obj, "peer_id");
  if (!peer_id) return error(error_reason::invalid_peer_id, "invalid peer_id", info_hash);

  if (present(obj, "answer")) {
    auto to_peer_id = id_field(obj, "to_peer_id");
    if (!to_peer_id)
      return error(error_reason::invalid_to_peer_id,
                   "invalid `to_peer_id` (required with `answer`)", info_hash);
    auto offer_id = id_field(obj, "offer_id");
    if (!offer_id)
      return error(error_reason::invalid_offer_id,
                   "invalid `offer_id` (required with `answer`)", info_hash);
    auto& sdp = obj["answer"];
    if (!sdp.is_object())
      return error(error_reason::invalid_offer_id, "invalid `answer` (must be an object)",
                   info_hash);
    return answer{*info_hash, *peer_id, *to_peer_id, *offer_id, std::move(sdp)};
  }

  bool event_valid = true;
  auto event = parse_event(obj, event_valid);
  if (!event_valid) return error(error_reason::invalid_event, "invalid event", info_hash);

  announce a;
  a.info_hash = *info_hash;
  a.peer_id = *peer_id;
  a.event = *event;
  a.left = parse_left(obj);
  if (auto it = obj.find("offers"); it != obj.end() && it->is_array()) {
    a.offers.reserve(it->size());
    for (auto& entry : *it) {
      // The reference client's own tests send {"fake_offer": …}: accept the announce, skip
      // the offers nobody could answer.
      std::optional<binary_id> offer_id;
      if (entry.is_object()) offer_id = id_field(entry, "offer_id");
      if (!offer_id || !entry.contains("offer") || !entry["offer"].is_object()) {
        ++a.offers_skipped;
        continue;
      }
      a.offers.push_back(offer{*offer_id, std::move(entry["offer"])});
    }
  }
  return a;
}

client_message decode_scrape(const json& obj) {
  scrape s;
  auto it = obj.find("info_hash");
  if (it == obj.end() || it->is_null()) {
    s.all = true;
    return s;
  }
  auto add = [&](const json& v) {
    if (!v.is_string()) return false;
    auto id = decode_binary_id(v.get_ref<const std::string&>());
    if (!id) return false;
    s.info_hashes.push_back(*id);
    return true;
  };
  if (it->is_array()) {
    if (it->size() > max_scrape_info_hashes)
      return error(error_reason::too_many_info_hashes,
                   "too many info_hash values in one scrape (at most " +
                       std::to_string(max_scrape_info_hashes) + ")",
                   std::nullopt, "scrape");
    for (const auto& v : *it)
      if (!add(v)) return error(error_reason::invalid_info_hash, "invalid info_hash", {}, "scrape");
  } else if (!add(*it)) {
    return error(error_reason::invalid_info_hash, "invalid info_hash", {}, "scrape");
  }
  return s;
}

// JSON string escaping of raw bytes; binary ids put bytes >= 0x80 out as U+0080..U+00FF.
void append_string(std::string& out, std::string_view utf8) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : utf8) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      out.append("\\u00");
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xF]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

void append_id(std::string& out, const binary_id& id) { append_string(out, encode_binary_id(id)); }

void append_json(std::string& out, const json& v) { append_json_value(out, v); }

struct encoder {
  std::string out;

  void operator()(const announce_response& r) {
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
    out.append(R"({"action":"announce","offer":)");
    append_json(out, r.sdp);
    out.append(R"(,"offer_id":)");
    append_id(out, r.offer_id);
    out.append(R"(,"peer_id":)");
    append_id(out, r.peer_id);
    out.append(R"(,"info_hash":)");
    append_id(out, r.info_hash);
    out.push_back('}');
  }
  void operator()(const answer_relay& r) {
    out.append(R"({"action":"announce","answer":)");
    append_json(out, r.sdp);
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
      append_string(out, e.action);
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
  }
  return "unknown";
}

client_message decode_client_message(std::string_view text) {
  auto parsed = parse_untrusted_json(text);
  if (!parsed.ok()) return error(error_reason::bad_json, std::move(parsed.error), {}, "");
  json& obj = parsed.value;
  if (!obj.is_object())
    return error(error_reason::not_an_object, "invalid action in WS request: undefined", {}, "");
  auto action = obj.find("action");
  if (action != obj.end() && action->is_string()) {
    const auto& name = action->get_ref<const std::string&>();
    if (name == "announce") return decode_announce(obj);
    if (name == "scrape") return decode_scrape(obj);
  }
  std::string shown = action == obj.end() ? "undefined"
                      : action->is_string() ? action->get<std::string>()
                                            : action->dump(-1, ' ', false, json::error_handler_t::replace);
  shown = shorten_utf8(shown, 64);
  return error(error_reason::invalid_action, "invalid action in WS request: " + shown, {}, "");
}

std::string_view type_name(const server_message& m) {
  static constexpr std::string_view names[] = {"announce", "offer", "answer", "scrape", "error"};
  return names[m.index()];
}

std::string encode(const server_message& m) {
  encoder e;
  std::visit(e, m);
  return std::move(e.out);
}

std::string encode_announce(const announce& a) {
  json j = {{"action", "announce"},
            {"info_hash", encode_binary_id(a.info_hash)},
            {"peer_id", encode_binary_id(a.peer_id)},
            {"numwant", a.offers.size()},
            {"uploaded", 0},
            {"downloaded", 0}};
  static constexpr const char* events[] = {nullptr,  "started", "completed", "stopped",
                                           "update", "paused",  "empty"};
  if (auto name = events[static_cast<int>(a.event)]) j["event"] = name;
  if (a.left) j["left"] = *a.left;
  if (!a.offers.empty()) {
    json offers = json::array();
    for (const auto& o : a.offers)
      offers.push_back({{"offer", o.sdp}, {"offer_id", encode_binary_id(o.offer_id)}});
    j["offers"] = std::move(offers);
  }
  return j.dump();
}

std::string encode_answer(const answer& a) {
  json j = {{"action", "announce"},
            {"info_hash", encode_binary_id(a.info_hash)},
            {"peer_id", encode_binary_id(a.peer_id)},
            {"to_peer_id", encode_binary_id(a.to_peer_id)},
            {"offer_id", encode_binary_id(a.offer_id)},
            {"answer", a.sdp}};
  return j.dump();
}

std::string encode_scrape(const scrape& s) {
  json j = {{"action", "scrape"}};
  if (!s.all) {
    json hashes = json::array();
    for (const auto& h : s.info_hashes) hashes.push_back(encode_binary_id(h));
    j["info_hash"] = std::move(hashes);
  }
  return j.dump();
}

}  // namespace swarmcoord::protocol::webtorrent
