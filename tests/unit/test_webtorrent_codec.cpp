// The WebTorrent tracker JSON codec: client messages decoded, server messages encoded.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/webtorrent.hpp"

namespace {

using nlohmann::json;
using swarmcoord::protocol::binary_id;
using swarmcoord::protocol::decode_binary_id;
using swarmcoord::protocol::encode_binary_id;
using swarmcoord::protocol::json_text;
namespace wt = swarmcoord::protocol::webtorrent;

// An id with awkward bytes: NUL, control bytes, '"', '\\', DEL, 0x80 and 0xFF among others.
binary_id awkward_id(std::uint8_t salt) {
  static constexpr std::uint8_t specials[] = {0x00, 0x01, 0x1F, '"', '\\', 0x7F, 0x80, 0xFF, '/', 0xC3};
  binary_id id;
  for (std::size_t i = 0; i < binary_id::size; ++i)
    id.bytes[i] = static_cast<std::uint8_t>(i < std::size(specials) ? specials[(i + salt) % std::size(specials)]
                                                                   : 'A' + (i * 7 + salt) % 26);
  id.bytes[19] = salt;  // distinct ids for distinct salts
  return id;
}

binary_id ascii_id(std::string_view text) {
  REQUIRE(text.size() == binary_id::size);
  binary_id id;
  for (std::size_t i = 0; i < binary_id::size; ++i) id.bytes[i] = static_cast<std::uint8_t>(text[i]);
  return id;
}

json sdp_of(std::string_view type, int n) {
  return {{"type", type}, {"sdp", "v=0\r\no=- " + std::to_string(n) + " 2 IN IP4 127.0.0.1\r\n\"q\"\\"}};
}

json_text text_of(const json& j) { return {j.dump()}; }
json value_of(const json_text& t) { return json::parse(t.text); }

std::string repeat(std::string_view piece, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += piece;
  return s;
}

template <class T>
T decode_as(std::string_view text) {
  auto msg = wt::decode_client_message(text);
  INFO("message: " << text);
  REQUIRE(std::holds_alternative<T>(msg));
  return std::get<T>(std::move(msg));
}

wt::request_error decode_error(std::string_view text) { return decode_as<wt::request_error>(text); }

binary_id id_from_json(const json& j) {
  REQUIRE(j.is_string());
  auto id = decode_binary_id(j.get<std::string>());
  REQUIRE(id.has_value());
  return *id;
}

std::set<std::string> keys_of(const json& j) {
  std::set<std::string> keys;
  for (const auto& item : j.items()) keys.insert(item.key());
  return keys;
}

// A base announce object as a client would send it; tests tweak fields before dumping.
json announce_json(const binary_id& info_hash, const binary_id& peer_id) {
  return {{"action", "announce"},
          {"info_hash", encode_binary_id(info_hash)},
          {"peer_id", encode_binary_id(peer_id)},
          {"numwant", 5},
          {"uploaded", 0},
          {"downloaded", 0}};
}

const char* event_name(wt::announce_event e) {
  switch (e) {
    case wt::announce_event::none: return nullptr;
    case wt::announce_event::started: return "started";
    case wt::announce_event::completed: return "completed";
    case wt::announce_event::stopped: return "stopped";
    case wt::announce_event::update: return "update";
    case wt::announce_event::paused: return "paused";
    case wt::announce_event::empty: return "empty";
  }
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------- client messages

TEST_CASE("announce round-trips through encode_announce and decode_client_message for every event") {
  auto event = GENERATE(wt::announce_event::none, wt::announce_event::started,
                        wt::announce_event::completed, wt::announce_event::stopped,
                        wt::announce_event::update, wt::announce_event::paused,
                        wt::announce_event::empty);
  auto left = GENERATE(std::optional<double>{}, std::optional<double>{0.0},
                       std::optional<double>{123456789.0});
  auto offer_count = GENERATE(0, 1, 5);

  wt::announce a;
  a.info_hash = awkward_id(1);
  a.peer_id = awkward_id(2);
  a.event = event;
  a.left = left;
  for (int i = 0; i < offer_count; ++i)
    a.offers.push_back({awkward_id(static_cast<std::uint8_t>(10 + i)), text_of(sdp_of("offer", i))});

  const auto text = wt::encode_announce(a);
  INFO("encoded: " << text);

  // The wire form, independently of the decoder.
  auto j = json::parse(text);
  CHECK(j["action"] == "announce");
  CHECK(id_from_json(j["info_hash"]) == a.info_hash);
  CHECK(id_from_json(j["peer_id"]) == a.peer_id);
  if (auto name = event_name(event)) CHECK(j["event"] == name);
  else CHECK_FALSE(j.contains("event"));
  CHECK(j.contains("left") == left.has_value());
  if (left) CHECK(j["left"].get<double>() == *left);
  CHECK(j.contains("offers") == (offer_count > 0));

  auto back = decode_as<wt::announce>(text);
  CHECK(back.info_hash == a.info_hash);
  CHECK(back.peer_id == a.peer_id);
  CHECK(back.event == event);
  CHECK(back.left == left);
  CHECK(back.offers_skipped == 0);
  REQUIRE(back.offers.size() == a.offers.size());
  for (std::size_t i = 0; i < a.offers.size(); ++i) {
    CHECK(back.offers[i].offer_id == a.offers[i].offer_id);
    CHECK(value_of(back.offers[i].sdp) == sdp_of("offer", static_cast<int>(i)));
    CHECK(back.offers[i].sdp == a.offers[i].sdp);  // minified, escaped the same way: same text
  }
}

TEST_CASE("announce event names from the wire map to the right events") {
  const std::vector<std::pair<std::string, wt::announce_event>> cases = {
      {"started", wt::announce_event::started},   {"completed", wt::announce_event::completed},
      {"stopped", wt::announce_event::stopped},   {"update", wt::announce_event::update},
      {"paused", wt::announce_event::paused},     {"empty", wt::announce_event::empty},
  };
  for (const auto& [name, event] : cases) {
    auto j = announce_json(ascii_id("info-hash-0000000001"), ascii_id("-WW0001-abcdefghijkl"));
    j["event"] = name;
    CHECK(decode_as<wt::announce>(j.dump()).event == event);
  }
  auto j = announce_json(ascii_id("info-hash-0000000001"), ascii_id("-WW0001-abcdefghijkl"));
  CHECK(decode_as<wt::announce>(j.dump()).event == wt::announce_event::none);  // absent
  j["event"] = nullptr;
  CHECK(decode_as<wt::announce>(j.dump()).event == wt::announce_event::none);  // null
}

TEST_CASE("announce with an invalid event is an error that keeps the socket") {
  const auto info_hash = awkward_id(3);
  for (json bad : {json("bogus"), json("STARTED"), json(5), json::array(), json::object()}) {
    auto j = announce_json(info_hash, awkward_id(4));
    j["event"] = bad;
    auto e = decode_error(j.dump());
    CHECK(e.reason == wt::error_reason::invalid_event);
    CHECK(e.message == "invalid event");
    REQUIRE(e.info_hash.has_value());
    CHECK(*e.info_hash == info_hash);

    auto reply = json::parse(wt::encode(e));
    CHECK(keys_of(reply) == std::set<std::string>{"action", "info_hash", "failure reason"});
    CHECK(reply["action"] == "announce");
    CHECK(reply["failure reason"] == "invalid event");
    CHECK(id_from_json(reply["info_hash"]) == info_hash);
  }
}

TEST_CASE("announce left is accepted as a number or a numeric string") {
  auto j = announce_json(awkward_id(1), awkward_id(2));
  j["left"] = 0;
  CHECK(decode_as<wt::announce>(j.dump()).left == 0.0);
  j["left"] = 1234;
  CHECK(decode_as<wt::announce>(j.dump()).left == 1234.0);
  j["left"] = 12.5;
  CHECK(decode_as<wt::announce>(j.dump()).left == 12.5);
  j["left"] = "0";
  CHECK(decode_as<wt::announce>(j.dump()).left == 0.0);
  j["left"] = "98765";
  CHECK(decode_as<wt::announce>(j.dump()).left == 98765.0);
  j.erase("left");
  CHECK_FALSE(decode_as<wt::announce>(j.dump()).left.has_value());
}

// Numeric strings may spell infinities and NaN (as JavaScript's Number() reads "Infinity" or
// "NaN"): not a seeder. JSON has no such numbers, and written as null they came back as no
// left at all, which leaves a peer's seeder state as it was (found by tests/fuzz).
TEST_CASE("announce left that is no finite number survives encode_announce") {
  for (const char* spelled : {"nan", "NaN", "inf", "Infinity", "-infinity"}) {
    INFO(spelled);
    auto j = announce_json(awkward_id(1), awkward_id(2));
    j["left"] = spelled;
    const auto first = decode_as<wt::announce>(j.dump());
    REQUIRE(first.left.has_value());
    REQUIRE_FALSE(std::isfinite(*first.left));
    const auto text = wt::encode_announce(first);
    INFO("encoded: " << text);
    const auto back = decode_as<wt::announce>(text);
    REQUIRE(back.left.has_value());
    CHECK(std::isnan(*back.left) == std::isnan(*first.left));
    if (!std::isnan(*first.left)) CHECK(*back.left == *first.left);
    CHECK(json::parse(text)["left"].is_string());  // valid JSON, and a string JavaScript reads alike
  }
}

TEST_CASE("announce offers without offer_id or offer are skipped and counted, the rest kept in order") {
  auto j = announce_json(awkward_id(1), awkward_id(2));
  j["event"] = "started";
  j["offers"] = json::array({
      json{{"fake_offer", "fake_offer_0"}},
      json{{"offer", sdp_of("offer", 1)}, {"offer_id", encode_binary_id(awkward_id(21))}},
      json{{"offer", sdp_of("offer", 2)}},                                            // no offer_id
      json{{"offer_id", encode_binary_id(awkward_id(23))}},                           // no offer
      json{{"offer", "not an object"}, {"offer_id", encode_binary_id(awkward_id(24))}},
      json{{"offer", sdp_of("offer", 5)}, {"offer_id", "too short"}},
      json{{"offer", sdp_of("offer", 6)}, {"offer_id", 6}},
      json(7),
      json("offer"),
      json{{"offer", sdp_of("offer", 9)}, {"offer_id", encode_binary_id(awkward_id(29))}},
      json{{"fake_offer", "fake_offer_1"}},
  });
  auto a = decode_as<wt::announce>(j.dump());
  CHECK(a.event == wt::announce_event::started);
  CHECK(a.offers_skipped == 9);
  REQUIRE(a.offers.size() == 2);
  CHECK(a.offers[0].offer_id == awkward_id(21));
  CHECK(value_of(a.offers[0].sdp) == sdp_of("offer", 1));
  CHECK(a.offers[1].offer_id == awkward_id(29));
  CHECK(value_of(a.offers[1].sdp) == sdp_of("offer", 9));
}

TEST_CASE("announce with only fake offers, as the reference client's tests send, is accepted") {
  auto j = announce_json(ascii_id("aaaaaaaaaaaaaaaaaaaa"), ascii_id("bbbbbbbbbbbbbbbbbbbb"));
  j["offers"] = json::array();
  for (int i = 0; i < 5; ++i) j["offers"].push_back({{"fake_offer", "fake_offer_" + std::to_string(i)}});
  auto a = decode_as<wt::announce>(j.dump());
  CHECK(a.offers.empty());
  CHECK(a.offers_skipped == 5);
  CHECK(a.info_hash == ascii_id("aaaaaaaaaaaaaaaaaaaa"));
}

TEST_CASE("announce ignores unknown keys") {
  auto j = announce_json(awkward_id(5), awkward_id(6));
  j["event"] = "completed";
  j["left"] = 0;
  j["trackerid"] = "abc";
  j["key"] = "def";
  j["something_new"] = {{"nested", json::array({1, 2, {{"x", nullptr}}})}};
  j["compact"] = 1;
  auto a = decode_as<wt::announce>(j.dump());
  CHECK(a.info_hash == awkward_id(5));
  CHECK(a.peer_id == awkward_id(6));
  CHECK(a.event == wt::announce_event::completed);
  CHECK(a.left == 0.0);
  CHECK(a.offers.empty());
  CHECK(a.offers_skipped == 0);
}

TEST_CASE("announce with an invalid info_hash or peer_id gives the reference error texts") {
  SECTION("info_hash missing, of the wrong type or length: no info_hash known, socket-error shape") {
    for (json bad : {json(), json(5), json("short"), json(std::string(21, 'x')), json::array()}) {
      auto j = announce_json(awkward_id(1), awkward_id(2));
      if (bad.is_null()) j.erase("info_hash");
      else j["info_hash"] = bad;
      auto e = decode_error(j.dump());
      CHECK(e.reason == wt::error_reason::invalid_info_hash);
      CHECK(e.message == "invalid info_hash");
      CHECK_FALSE(e.info_hash.has_value());
      auto reply = json::parse(wt::encode(e));
      CHECK(keys_of(reply) == std::set<std::string>{"failure reason"});
      CHECK(reply["failure reason"] == "invalid info_hash");
    }
  }
  SECTION("peer_id missing or of the wrong length") {
    for (json bad : {json(), json(5), json(std::string(19, 'x'))}) {
      auto j = announce_json(awkward_id(1), awkward_id(2));
      if (bad.is_null()) j.erase("peer_id");
      else j["peer_id"] = bad;
      auto e = decode_error(j.dump());
      CHECK(e.reason == wt::error_reason::invalid_peer_id);
      CHECK(e.message == "invalid peer_id");
      auto reply = json::parse(wt::encode(e));
      CHECK(reply["failure reason"] == "invalid peer_id");
      // The info_hash was valid, so the reply is routable by the client (warning shape).
      REQUIRE(e.info_hash.has_value());
      CHECK(*e.info_hash == awkward_id(1));
      CHECK(id_from_json(reply["info_hash"]) == awkward_id(1));
    }
  }
}

TEST_CASE("answer round-trips through encode_answer and decode_client_message") {
  wt::answer a{awkward_id(1), awkward_id(2), awkward_id(3), awkward_id(4), text_of(sdp_of("answer", 7))};
  const auto text = wt::encode_answer(a);
  auto j = json::parse(text);
  CHECK(j["action"] == "announce");
  CHECK(id_from_json(j["to_peer_id"]) == a.to_peer_id);
  CHECK(id_from_json(j["offer_id"]) == a.offer_id);
  CHECK(j["answer"] == sdp_of("answer", 7));
  CHECK_FALSE(j.contains("event"));
  CHECK_FALSE(j.contains("offers"));

  auto back = decode_as<wt::answer>(text);
  CHECK(back.info_hash == a.info_hash);
  CHECK(back.peer_id == a.peer_id);
  CHECK(back.to_peer_id == a.to_peer_id);
  CHECK(back.offer_id == a.offer_id);
  CHECK(back.sdp == a.sdp);
}

TEST_CASE("answer without a valid to_peer_id or offer_id is rejected with the reference text") {
  wt::answer a{awkward_id(1), awkward_id(2), awkward_id(3), awkward_id(4), text_of(sdp_of("answer", 7))};
  auto base = json::parse(wt::encode_answer(a));

  for (json bad : {json(), json(42), json("short")}) {
    auto j = base;
    if (bad.is_null()) j.erase("to_peer_id");
    else j["to_peer_id"] = bad;
    auto e = decode_error(j.dump());
    CHECK(e.reason == wt::error_reason::invalid_to_peer_id);
    CHECK(e.message == "invalid `to_peer_id` (required with `answer`)");
    auto reply = json::parse(wt::encode(e));
    CHECK(reply["failure reason"] == "invalid `to_peer_id` (required with `answer`)");
  }
  for (json bad : {json(), json(42), json("short")}) {
    auto j = base;
    if (bad.is_null()) j.erase("offer_id");
    else j["offer_id"] = bad;
    auto e = decode_error(j.dump());
    CHECK(e.reason == wt::error_reason::invalid_offer_id);
  }
  auto j = base;
  j["answer"] = "not an object";
  CHECK(decode_error(j.dump()).reason == wt::error_reason::invalid_offer_id);
}

TEST_CASE("scrape of one info_hash, a list, and all round-trips") {
  SECTION("one info_hash as a plain string") {
    json j = {{"action", "scrape"}, {"info_hash", encode_binary_id(awkward_id(9))}};
    auto s = decode_as<wt::scrape>(j.dump());
    CHECK_FALSE(s.all);
    REQUIRE(s.info_hashes.size() == 1);
    CHECK(s.info_hashes[0] == awkward_id(9));
  }
  SECTION("a list via encode_scrape") {
    wt::scrape s;
    for (std::uint8_t i = 0; i < 6; ++i) s.info_hashes.push_back(awkward_id(i));
    const auto text = wt::encode_scrape(s);
    auto j = json::parse(text);
    CHECK(j["action"] == "scrape");
    REQUIRE(j["info_hash"].is_array());
    CHECK(j["info_hash"].size() == 6);
    auto back = decode_as<wt::scrape>(text);
    CHECK_FALSE(back.all);
    CHECK(back.info_hashes == s.info_hashes);
  }
  SECTION("all swarms via encode_scrape") {
    wt::scrape s;
    s.all = true;
    const auto text = wt::encode_scrape(s);
    CHECK_FALSE(json::parse(text).contains("info_hash"));
    auto back = decode_as<wt::scrape>(text);
    CHECK(back.all);
    CHECK(back.info_hashes.empty());
  }
  SECTION("info_hash null also means all") {
    auto back = decode_as<wt::scrape>(R"({"action":"scrape","info_hash":null})");
    CHECK(back.all);
  }
}

TEST_CASE("scrape with a non-string info_hash is an error, not a crash") {
  for (const char* text : {R"({"action":"scrape","info_hash":5})", R"({"action":"scrape","info_hash":{}})",
                           R"({"action":"scrape","info_hash":[5]})", R"({"action":"scrape","info_hash":true})",
                           R"({"action":"scrape","info_hash":"short"})",
                           R"({"action":"scrape","info_hash":["aaaaaaaaaaaaaaaaaaaa", 1]})"}) {
    wt::client_message msg;
    REQUIRE_NOTHROW(msg = wt::decode_client_message(text));
    REQUIRE(std::holds_alternative<wt::request_error>(msg));
    const auto& e = std::get<wt::request_error>(msg);
    CHECK(e.reason == wt::error_reason::invalid_info_hash);
    CHECK(e.message == "invalid info_hash");
    auto reply = json::parse(wt::encode(e));
    CHECK(reply["failure reason"] == "invalid info_hash");
  }
}

TEST_CASE("scrape of more info_hashes than the limit is refused") {
  json j = {{"action", "scrape"}, {"info_hash", json::array()}};
  for (std::size_t i = 0; i <= wt::max_scrape_info_hashes; ++i) j["info_hash"].push_back(std::string(20, 'a'));
  auto e = decode_error(j.dump());
  CHECK(e.reason == wt::error_reason::too_many_info_hashes);
  j["info_hash"].erase(j["info_hash"].size() - 1);
  CHECK(decode_as<wt::scrape>(j.dump()).info_hashes.size() == wt::max_scrape_info_hashes);
}

TEST_CASE("invalid actions and non-objects give the reference socket-error text") {
  auto check_error = [](std::string_view text, wt::error_reason reason, std::string_view expected) {
    auto e = decode_error(text);
    CHECK(e.reason == reason);
    CHECK(e.message == expected);
    CHECK_FALSE(e.info_hash.has_value());
    auto reply = json::parse(wt::encode(e));
    CHECK(keys_of(reply) == std::set<std::string>{"failure reason"});
    CHECK(reply["failure reason"] == expected);
  };
  check_error(R"({"action":"bogus","info_hash":"aaaaaaaaaaaaaaaaaaaa"})", wt::error_reason::invalid_action,
              "invalid action in WS request: bogus");
  check_error(R"({"info_hash":"aaaaaaaaaaaaaaaaaaaa"})", wt::error_reason::invalid_action,
              "invalid action in WS request: undefined");
  check_error(R"({"action":"Announce"})", wt::error_reason::invalid_action,
              "invalid action in WS request: Announce");
  check_error(R"({"action":7})", wt::error_reason::invalid_action, "invalid action in WS request: 7");
  check_error(R"([1,2,3])", wt::error_reason::not_an_object, "invalid action in WS request: undefined");
  check_error(R"("announce")", wt::error_reason::not_an_object, "invalid action in WS request: undefined");
}

TEST_CASE("undecodable text is a bad_json error with the parser's sentence, never an exception") {
  for (std::string text : {std::string("{"), std::string("not json"), std::string(""),
                           std::string(100000, '['), std::string(R"({"action":"announce","left":1e400})"),
                           std::string("{\"action\":\"\xff\"}")}) {
    wt::client_message msg;
    REQUIRE_NOTHROW(msg = wt::decode_client_message(text));
    REQUIRE(std::holds_alternative<wt::request_error>(msg));
    const auto& e = std::get<wt::request_error>(msg);
    CHECK(e.reason == wt::error_reason::bad_json);
    CHECK_FALSE(e.message.empty());
    CHECK_FALSE(e.info_hash.has_value());
  }
}

TEST_CASE("a key given twice counts the last time, as with JSON.parse") {
  const std::string ih = encode_binary_id(awkward_id(1)), pid = encode_binary_id(awkward_id(2));
  auto announce_with = [&](const std::string& extra) {
    return R"({"action":"announce","info_hash":)" + json(ih).dump() + R"(,"peer_id":)" + json(pid).dump() + extra + "}";
  };
  SECTION("action") {
    CHECK(std::holds_alternative<wt::scrape>(
        wt::decode_client_message(R"({"action":"announce","action":"scrape"})")));
    auto a = decode_as<wt::announce>(R"({"action":"scrape","info_hash":)" + json(ih).dump() + R"(,"action":"announce","peer_id":)" +
                                     json(pid).dump() + "}");
    CHECK(a.info_hash == awkward_id(1));
  }
  SECTION("ids") {
    auto a = decode_as<wt::announce>(R"({"action":"announce","info_hash":"short","info_hash":)" + json(ih).dump() +
                                     R"(,"peer_id":)" + json(pid).dump() + "}");
    CHECK(a.info_hash == awkward_id(1));
    auto e = decode_error(announce_with(R"(,"peer_id":5)"));
    CHECK(e.reason == wt::error_reason::invalid_peer_id);
  }
  SECTION("event and left") {
    auto a = decode_as<wt::announce>(announce_with(R"(,"event":"bogus","left":"x","event":"stopped","left":7)"));
    CHECK(a.event == wt::announce_event::stopped);
    CHECK(a.left == 7.0);
    CHECK(decode_error(announce_with(R"(,"event":"started","event":"bogus")")).reason == wt::error_reason::invalid_event);
  }
  SECTION("offers, and the offer and offer_id of an entry") {
    const std::string id1 = json(encode_binary_id(awkward_id(31))).dump(), id2 = json(encode_binary_id(awkward_id(32))).dump();
    auto a = decode_as<wt::announce>(announce_with(
        R"(,"offers":[{"offer":{"n":1},"offer_id":)" + id1 + R"(}],"offers":[{"offer":{"n":2},"offer_id":)" + id1 +
        R"(,"offer":{"n":3},"offer_id":)" + id2 + "}]"));
    REQUIRE(a.offers.size() == 1);
    CHECK(a.offers[0].offer_id == awkward_id(32));
    CHECK(value_of(a.offers[0].sdp) == json{{"n", 3}});
    auto b = decode_as<wt::announce>(announce_with(R"(,"offers":[{"offer":{"n":1},"offer":5,"offer_id":)" + id1 + "}]"));
    CHECK(b.offers.empty());
    CHECK(b.offers_skipped == 1);
  }
  SECTION("answer: a later null makes it an announce") {
    const std::string ids = R"(,"to_peer_id":)" + json(encode_binary_id(awkward_id(3))).dump() + R"(,"offer_id":)" +
                            json(encode_binary_id(awkward_id(4))).dump();
    CHECK(std::holds_alternative<wt::announce>(
        wt::decode_client_message(announce_with(ids + R"(,"answer":{"type":"answer"},"answer":null)"))));
    auto ans = decode_as<wt::answer>(announce_with(ids + R"(,"answer":{"n":1},"answer":{"n":2})"));
    CHECK(value_of(ans.sdp) == json{{"n", 2}});
  }
  SECTION("scrape info_hash") {
    auto sc = decode_as<wt::scrape>(R"({"action":"scrape","info_hash":5,"info_hash":)" + json(ih).dump() + "}");
    REQUIRE(sc.info_hashes.size() == 1);
    CHECK(sc.info_hashes[0] == awkward_id(1));
    CHECK(decode_as<wt::scrape>(R"({"action":"scrape","info_hash":)" + json(ih).dump() + R"(,"info_hash":null})").all);
  }
}

TEST_CASE("text that is not valid UTF-8 is bad_json, wherever it is") {
  const std::string valid = wt::encode_announce({awkward_id(1), awkward_id(2)});
  for (const std::string bad : {"\xff", "\xc3\x28", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    for (const std::string& text : {R"({"action":"announce","x":")" + bad + R"("})", "{\"" + bad + "\":1}",
                                    valid.substr(0, valid.size() - 1) + R"(,"offers":[{"offer":{"sdp":")" + bad + R"("}}]})"}) {
      INFO("text: " << text);
      auto e = decode_error(text);
      CHECK(e.reason == wt::error_reason::bad_json);
      CHECK(e.message.find("UTF-8") != std::string::npos);
    }
  }
  // Escapes that name no character are refused too: a lone surrogate.
  CHECK(decode_error(R"({"action":"announce","x":"\ud800"})").reason == wt::error_reason::bad_json);
  CHECK(decode_error(R"({"action":"announce","x":"\udc00"})").reason == wt::error_reason::bad_json);
}

TEST_CASE("nesting deeper than the limit is bad_json") {
  const std::string head = R"({"action":"announce","info_hash":"aaaaaaaaaaaaaaaaaaaa","peer_id":"bbbbbbbbbbbbbbbbbbbb","x":)";
  for (std::size_t depth = 1; depth <= swarmcoord::protocol::default_max_json_depth + 3; ++depth) {
    // The announce object is one level; the rest are arrays or objects under "x".
    std::string arrays = head, objects = head;
    for (std::size_t i = 1; i < depth; ++i) arrays += '[', objects += R"({"y":)";
    arrays += '1';
    objects += '1';
    for (std::size_t i = 1; i < depth; ++i) arrays += ']', objects += '}';
    arrays += '}';
    objects += '}';
    for (const auto& text : {arrays, objects}) {
      INFO("depth " << depth << ": " << text);
      const bool too_deep = depth > swarmcoord::protocol::default_max_json_depth;
      auto msg = wt::decode_client_message(text);
      if (too_deep) {
        REQUIRE(std::holds_alternative<wt::request_error>(msg));
        CHECK(std::get<wt::request_error>(msg).reason == wt::error_reason::bad_json);
        CHECK(std::get<wt::request_error>(msg).message ==
              "JSON nested deeper than " + std::to_string(swarmcoord::protocol::default_max_json_depth) + " levels");
      } else {
        CHECK(std::holds_alternative<wt::announce>(msg));
      }
    }
  }
}

TEST_CASE("numbers a double cannot hold are bad_json") {
  for (const char* number : {"1e400", "-1e400", "1E+309", "18446744073709551616", "-9223372036854775809"}) {
    // (JSON.parse reads the last two as doubles; no WebTorrent client sends integers that big.)
    const std::string text = std::string(R"({"action":"announce","left":)") + number + "}";
    INFO(text);
    auto e = decode_error(text);
    CHECK(e.reason == wt::error_reason::bad_json);
    CHECK(e.message.rfind("JSON parse error: ", 0) == 0);
  }
  // The largest integers and tiny doubles are fine.
  auto a = decode_as<wt::announce>(wt::encode_announce({awkward_id(1), awkward_id(2)}).insert(1, R"("big":18446744073709551615,"small":-9223372036854775808,"tiny":1e-400,)"));
  CHECK(a.info_hash == awkward_id(1));
}

TEST_CASE("announce offers that are not an array, or arrays of junk, relay nothing and never fail") {
  const std::string head = wt::encode_announce({awkward_id(1), awkward_id(2)});
  auto with_offers = [&](const std::string& offers) { return head.substr(0, head.size() - 1) + R"(,"offers":)" + offers + "}"; };
  for (const char* offers : {"null", "5", R"("x")", "{}", R"({"offer":{},"offer_id":"aaaaaaaaaaaaaaaaaaaa"})", "true", "[]"}) {
    auto a = decode_as<wt::announce>(with_offers(offers));
    CHECK(a.offers.empty());
    CHECK(a.offers_skipped == 0);
  }
  const std::string id = json(encode_binary_id(awkward_id(9))).dump();
  const std::vector<std::string> junk = {
      "null", "true", "false", "0", "-1.5", R"("")", "[]", "[[]]", R"([{"offer":{},"offer_id":)" + id + "}]", "{}",
      R"({"offer":null,"offer_id":)" + id + "}", R"({"offer":[],"offer_id":)" + id + "}",
      R"({"offer":"{}","offer_id":)" + id + "}", R"({"offer":{},"offer_id":null})", R"({"offer":{},"offer_id":[)" + id + "]}",
      R"({"offer":{},"offer_id":"\u0100aaaaaaaaaaaaaaaaaaa"})", R"({"Offer":{},"offer_id":)" + id + "}",
      R"({"offer":{},"offer_ID":)" + id + "}", R"({"offer":{"deep":[[[[{"a":[1]}]]]]}})",
  };
  std::string list = "[";
  for (const auto& j : junk) list += j + ",";
  list += R"({"offer":{"type":"offer","sdp":"ok"},"offer_id":)" + id + "}]";
  auto a = decode_as<wt::announce>(with_offers(list));
  CHECK(a.offers_skipped == junk.size());
  REQUIRE(a.offers.size() == 1);
  CHECK(a.offers[0].offer_id == awkward_id(9));
  CHECK(value_of(a.offers[0].sdp) == json{{"type", "offer"}, {"sdp", "ok"}});
}

TEST_CASE("every error reply is valid UTF-8 JSON, whatever bytes the request contained") {
  const std::vector<std::string> hostile = {
      "{\"action\":\"\xff\"}",
      "\xff\xfe\xfd",
      "{\"a\":\"\xc3\"}",
      "[\"\xe2\x82\"]",
      "{\"action\":\"" + std::string(70, 'x') + "\"}",
      // Long actions of multi-byte characters, placed so that a cut at a fixed byte count
      // would split a character.
      "{\"action\":\"a" + repeat("\xC3\xA9", 70) + "\"}",
      "{\"action\":\"" + repeat("\xE2\x82\xAC", 70) + "\"}",
      "{\"action\":\"ab" + repeat("\xF0\x9F\x98\x80", 70) + "\"}",
      "{\"action\":[\"a" + repeat("\xC3\xA9", 70) + "\"]}",
  };
  for (const auto& text : hostile) {
    auto msg = wt::decode_client_message(text);
    REQUIRE(std::holds_alternative<wt::request_error>(msg));
    const auto reply = wt::encode(std::get<wt::request_error>(msg));
    INFO("reply: " << reply);
    json j;
    REQUIRE_NOTHROW(j = json::parse(reply));  // nlohmann rejects invalid UTF-8
    CHECK(j.contains("failure reason"));
  }
}

TEST_CASE("error_reason names are distinct metric labels") {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < wt::error_reason_count; ++i) {
    auto name = wt::to_string(static_cast<wt::error_reason>(i));
    CHECK(name != "unknown");
    CHECK(name.find(' ') == std::string_view::npos);
    names.insert(name);
  }
  CHECK(names.size() == wt::error_reason_count);
  CHECK(wt::to_string(wt::error_reason::invalid_info_hash) == "invalid_info_hash");
  CHECK(wt::to_string(wt::error_reason::too_many_peers) == "too_many_peers");
  CHECK(wt::to_string(wt::error_reason::peer_id_in_use) == "peer_id_in_use");
  CHECK(wt::to_string(wt::error_reason::server_full) == "server_full");
}

// ---------------------------------------------------------------- server messages

TEST_CASE("announce_response encodes every field") {
  wt::announce_response r{awkward_id(7), 3, 11, 120};
  auto j = json::parse(wt::encode(r));
  CHECK(keys_of(j) == std::set<std::string>{"action", "info_hash", "interval", "complete", "incomplete"});
  CHECK(j["action"] == "announce");
  CHECK(id_from_json(j["info_hash"]) == awkward_id(7));
  CHECK(j["interval"] == 120);
  CHECK(j["complete"] == 3);
  CHECK(j["incomplete"] == 11);
  CHECK(wt::type_name(r) == "announce");

  wt::announce_response big{awkward_id(8), 4000000000u, 0, 86400};
  auto k = json::parse(wt::encode(big));
  CHECK(k["complete"].get<std::uint64_t>() == 4000000000u);
  CHECK(k["incomplete"] == 0);
  CHECK(k["interval"] == 86400);
}

TEST_CASE("offer_relay encodes every field and relays the offer as received") {
  json sdp = sdp_of("offer", 3);
  sdp["extra"] = {{"unicode", "\xC3\xA9\xE2\x82\xAC"}, {"list", {1, 2.5, nullptr, true}}};
  wt::offer_relay r{awkward_id(1), awkward_id(2), awkward_id(3), text_of(sdp)};
  auto j = json::parse(wt::encode(r));
  CHECK(keys_of(j) == std::set<std::string>{"action", "offer", "offer_id", "peer_id", "info_hash"});
  CHECK(j["action"] == "announce");
  CHECK(j["offer"] == sdp);
  CHECK(id_from_json(j["info_hash"]) == awkward_id(1));
  CHECK(id_from_json(j["peer_id"]) == awkward_id(2));
  CHECK(id_from_json(j["offer_id"]) == awkward_id(3));
  CHECK(wt::type_name(r) == "offer");
}

TEST_CASE("answer_relay encodes every field and relays the answer as received") {
  json sdp = sdp_of("answer", 4);
  wt::answer_relay r{awkward_id(4), awkward_id(5), awkward_id(6), text_of(sdp)};
  auto j = json::parse(wt::encode(r));
  CHECK(keys_of(j) == std::set<std::string>{"action", "answer", "offer_id", "peer_id", "info_hash"});
  CHECK(j["action"] == "announce");
  CHECK(j["answer"] == sdp);
  CHECK(id_from_json(j["info_hash"]) == awkward_id(4));
  CHECK(id_from_json(j["peer_id"]) == awkward_id(5));
  CHECK(id_from_json(j["offer_id"]) == awkward_id(6));
  CHECK(wt::type_name(r) == "answer");
}

TEST_CASE("an offer decoded from a client is relayed byte-for-byte equivalent") {
  auto j = announce_json(awkward_id(1), awkward_id(2));
  json sdp = {{"type", "offer"}, {"sdp", "v=0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host\r\n"}};
  j["offers"] = json::array({{{"offer", sdp}, {"offer_id", encode_binary_id(awkward_id(3))}}});
  auto a = decode_as<wt::announce>(j.dump());
  REQUIRE(a.offers.size() == 1);
  wt::offer_relay r{a.info_hash, a.peer_id, a.offers[0].offer_id, a.offers[0].sdp};
  auto out = json::parse(wt::encode(r));
  CHECK(out["offer"] == sdp);
  CHECK(id_from_json(out["offer_id"]) == awkward_id(3));
}

TEST_CASE("an offer's text comes out of decode and offer_relay the same JSON value, escapes and all") {
  // Written by hand to include escapes JSON allows but nlohmann would not write (\/, \u0041,
  // a surrogate pair), every control character, non-ASCII text, numbers at the edges, and
  // keys that need escapes.
  std::string controls;
  for (int c = 0; c < 0x20; ++c) controls += "\\u00" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
  const std::string sdp_text =
      R"({"type":"offer","sdp":"v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\n","esc":"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00",)"
      R"("ctl":")" + controls + R"(","utf8":"é€😀 ","k\"\\\u0001ey":true,"n":[0,-0,1,-1,1.0,0.1,-2.5e-7,1.5e300,)"
      R"(18446744073709551615,-9223372036854775808,12345678901234567890],"z":[null,false,{},[],""],"dup":1,"dup":2,)"
      R"("deep":{"a":{"b":[{"c":"d"}]}}})";
  const json original = json::parse(sdp_text);  // nlohmann keeps the last "dup", so does JSON.parse

  const std::string text = wt::encode_announce({awkward_id(1), awkward_id(2)});
  auto a = decode_as<wt::announce>(text.substr(0, text.size() - 1) + R"(,"offers":[{"offer":)" + sdp_text +
                                   R"(,"offer_id":)" + json(encode_binary_id(awkward_id(3))).dump() + "}]}");
  REQUIRE(a.offers.size() == 1);
  const auto relay = wt::encode(wt::offer_relay{a.info_hash, a.peer_id, a.offers[0].offer_id, a.offers[0].sdp});
  INFO("relay: " << relay);
  json out;
  REQUIRE_NOTHROW(out = json::parse(relay));  // valid JSON, valid UTF-8
  CHECK(out["offer"] == original);
  CHECK(id_from_json(out["offer_id"]) == awkward_id(3));
  // Minified, in the order received, controls escaped as JSON.stringify escapes them.
  const auto& sdp = a.offers[0].sdp.text;
  CHECK(sdp.find(R"({"type":"offer","sdp":"v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\n","esc":"\"\\/\b\f\n\r\tAé😀",)") == 0);
  CHECK(sdp.find(R"("ctl":"\u0000\u0001)") != std::string::npos);
  CHECK(sdp.find(R"(\u001f")") != std::string::npos);
  CHECK(sdp.find(R"("dup":1,"dup":2)") != std::string::npos);
  // And through the answer side the same way.
  auto ans = decode_as<wt::answer>(wt::encode_answer({awkward_id(1), awkward_id(2), awkward_id(3), awkward_id(4), a.offers[0].sdp}));
  CHECK(ans.sdp == a.offers[0].sdp);
  auto back = json::parse(wt::encode(wt::answer_relay{ans.info_hash, ans.peer_id, ans.offer_id, ans.sdp}));
  CHECK(back["answer"] == original);
}

TEST_CASE("scrape_response encodes every file and the flags") {
  wt::scrape_response r;
  r.files.push_back({awkward_id(1), 1, 2, 3});
  r.files.push_back({awkward_id(2), 0, 0, 0});
  r.files.push_back({awkward_id(3), 100000, 7, 12345678901ull});
  auto j = json::parse(wt::encode(r));
  CHECK(keys_of(j) == std::set<std::string>{"action", "files", "flags"});
  CHECK(j["action"] == "scrape");
  CHECK(j["flags"]["min_request_interval"] == 600);
  REQUIRE(j["files"].size() == 3);
  for (const auto& f : r.files) {
    auto key = encode_binary_id(f.info_hash);
    REQUIRE(j["files"].contains(key));
    const auto& e = j["files"][key];
    CHECK(keys_of(e) == std::set<std::string>{"complete", "incomplete", "downloaded"});
    CHECK(e["complete"] == f.complete);
    CHECK(e["incomplete"] == f.incomplete);
    CHECK(e["downloaded"].get<std::uint64_t>() == f.downloaded);
  }
  CHECK(wt::type_name(r) == "scrape");

  auto empty = json::parse(wt::encode(wt::scrape_response{}));
  CHECK(empty["files"].is_object());
  CHECK(empty["files"].empty());
}

TEST_CASE("request_error has two shapes depending on whether the info_hash is known") {
  SECTION("without info_hash: only failure reason, no action") {
    wt::request_error e{wt::error_reason::invalid_info_hash, "invalid info_hash", std::nullopt, "announce"};
    auto j = json::parse(wt::encode(e));
    CHECK(keys_of(j) == std::set<std::string>{"failure reason"});
    CHECK(j["failure reason"] == "invalid info_hash");
    CHECK(wt::type_name(e) == "error");
  }
  SECTION("with info_hash: action, info_hash and failure reason") {
    wt::request_error e{wt::error_reason::invalid_event, "invalid event", awkward_id(5), "announce"};
    auto j = json::parse(wt::encode(e));
    CHECK(keys_of(j) == std::set<std::string>{"action", "info_hash", "failure reason"});
    CHECK(j["action"] == "announce");
    CHECK(id_from_json(j["info_hash"]) == awkward_id(5));
    CHECK(j["failure reason"] == "invalid event");
  }
  SECTION("messages with quotes, backslashes and control characters are escaped") {
    wt::request_error e{wt::error_reason::invalid_to_peer_id,
                        "invalid `to_peer_id` (required with `answer`) \"x\" \\ \n\t\x01", awkward_id(6),
                        "announce"};
    auto j = json::parse(wt::encode(e));
    CHECK(j["failure reason"] == e.message);
  }
}
