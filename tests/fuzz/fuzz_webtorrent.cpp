// The WebTorrent codec (protocol/webtorrent.cpp): whatever decodes as a request encodes with
// the client-side encoders and decodes again to the same value; every server message built
// from it, errors quoting hostile input included, is valid JSON.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "protocol/json_dom.hpp"
#include "protocol/webtorrent.hpp"

namespace proto = swarmcoord::protocol;
namespace wt = proto::webtorrent;

namespace {

bool valid_json(const std::string& text) {
  simdjson::dom::element e;
  return !proto::parse_json(text).get(e);
}

bool same_left(const std::optional<double>& a, const std::optional<double>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || *a == *b || (std::isnan(*a) && std::isnan(*b));
}

bool same(const wt::announce& a, const wt::announce& b) {
  if (a.info_hash != b.info_hash || a.peer_id != b.peer_id || a.event != b.event || !same_left(a.left, b.left) ||
      a.offers.size() != b.offers.size())
    return false;
  for (std::size_t i = 0; i < a.offers.size(); ++i)
    if (a.offers[i].offer_id != b.offers[i].offer_id || a.offers[i].sdp != b.offers[i].sdp) return false;
  return true;
}

bool same(const wt::answer& a, const wt::answer& b) {
  return a.info_hash == b.info_hash && a.peer_id == b.peer_id && a.to_peer_id == b.to_peer_id &&
         a.offer_id == b.offer_id && a.sdp == b.sdp;
}

bool same(const wt::scrape& a, const wt::scrape& b) { return a.all == b.all && a.info_hashes == b.info_hashes; }

template <class T>
void round_trip(const T& first, const std::string& encoded) {
  FUZZ_REQUIRE_MSG(valid_json(encoded), encoded);
  const auto second = wt::decode_client_message(encoded);
  const auto* again = std::get_if<T>(&second);
  FUZZ_REQUIRE_MSG(again != nullptr, "re-encoded as " + encoded);
  FUZZ_REQUIRE_MSG(same(first, *again), "re-encoded as " + encoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto message = wt::decode_client_message(text);
  if (const auto* a = std::get_if<wt::announce>(&message)) {
    round_trip(*a, wt::encode_announce(*a));
    FUZZ_REQUIRE(valid_json(wt::encode(wt::announce_response{a->info_hash, 1, 2, 120})));
    for (const auto& o : a->offers)
      FUZZ_REQUIRE(valid_json(wt::encode(wt::offer_relay{a->info_hash, a->peer_id, o.offer_id, o.sdp})));
  } else if (const auto* a = std::get_if<wt::answer>(&message)) {
    round_trip(*a, wt::encode_answer(*a));
    FUZZ_REQUIRE(valid_json(wt::encode(wt::answer_relay{a->info_hash, a->peer_id, a->offer_id, a->sdp})));
  } else if (const auto* s = std::get_if<wt::scrape>(&message)) {
    FUZZ_REQUIRE(!s->all || s->info_hashes.empty());  // a list may be empty: a scrape of nothing
    FUZZ_REQUIRE(s->info_hashes.size() <= wt::max_scrape_info_hashes);
    round_trip(*s, wt::encode_scrape(*s));
    wt::scrape_response r;
    for (const auto& h : s->info_hashes) r.files.push_back({h, 1, 2, 3});
    FUZZ_REQUIRE(valid_json(wt::encode(r)));
  } else {
    const auto& e = std::get<wt::request_error>(message);
    const auto reply = wt::encode(e);
    FUZZ_REQUIRE_MSG(valid_json(reply), reply);
  }
  return 0;
}
