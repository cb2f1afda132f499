// The native codec (protocol/native*.cpp): whatever decodes as a client message encodes with
// the client-side encoders and decodes again to the same value; the server messages built
// from it, errors quoting hostile input included, are valid JSON.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_check.hpp"
#include "protocol/json_dom.hpp"
#include "protocol/native.hpp"

namespace proto = swarmcoord::protocol;
namespace nv = proto::native;

namespace {

bool valid_json(const std::string& text) {
  simdjson::dom::element e;
  return !proto::parse_json(text).get(e);
}

bool same(const nv::hello& a, const nv::hello& b) { return a.native == b.native && a.max_neighbors == b.max_neighbors; }
bool same(const nv::join& a, const nv::join& b) {
  return a.swarm == b.swarm && a.size == b.size && a.block_size == b.block_size && a.have == b.have &&
         a.bitfield_bytes == b.bitfield_bytes;
}
bool same(const nv::have& a, const nv::have& b) { return a.swarm == b.swarm && a.blocks == b.blocks; }
bool same(const nv::leave& a, const nv::leave& b) { return a.swarm == b.swarm; }
bool same(const nv::signal& a, const nv::signal& b) {
  return a.swarm == b.swarm && a.to == b.to && a.data == b.data && a.kind == b.kind;
}
bool same(const nv::report& a, const nv::report& b) {
  return a.swarm == b.swarm && a.http_bytes == b.http_bytes && a.p2p_bytes == b.p2p_bytes &&
         a.uploaded_bytes == b.uploaded_bytes && a.bad_peers == b.bad_peers;
}

std::string encoded(const nv::hello& m) { return nv::encode_hello(m); }
std::string encoded(const nv::join& m) { return nv::encode_join(m); }
std::string encoded(const nv::have& m) { return nv::encode_have(m); }
std::string encoded(const nv::leave& m) { return nv::encode_leave(m); }
std::string encoded(const nv::signal& m) { return nv::encode_signal(m); }
std::string encoded(const nv::report& m) { return nv::encode_report(m); }

// Small limits now and then, so that the limit checks see inputs on both sides of them.
nv::decode_limits limits_for(std::size_t size) {
  nv::decode_limits l;
  if (size % 3 == 0) {
    l.max_signal_bytes = 64;
    l.max_have_blocks = 8;
  }
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto limits = limits_for(size);
  const auto message = nv::decode_client_message(text, limits);
  std::visit(
      [&](const auto& first) {
        using T = std::decay_t<decltype(first)>;
        if constexpr (std::is_same_v<T, nv::error>) {
          const auto reply = nv::encode(first);
          FUZZ_REQUIRE_MSG(valid_json(reply), reply);
        } else {
          const std::string again_text = encoded(first);
          FUZZ_REQUIRE_MSG(valid_json(again_text), again_text);
          const auto second = nv::decode_client_message(again_text, limits);
          const auto* again = std::get_if<T>(&second);
          FUZZ_REQUIRE_MSG(again != nullptr, "re-encoded as " + again_text);
          FUZZ_REQUIRE_MSG(same(first, *again), "re-encoded as " + again_text);
          if constexpr (std::is_same_v<T, nv::signal>) {
            FUZZ_REQUIRE(first.data.text.size() <= limits.max_signal_bytes);
            FUZZ_REQUIRE(valid_json(nv::encode(nv::signal_relay{first.swarm, 7, first.data})));
          }
          if constexpr (std::is_same_v<T, nv::join>) {
            FUZZ_REQUIRE(valid_json(nv::encode(nv::joined{first.swarm, 3, 4})));
            FUZZ_REQUIRE(valid_json(nv::encode(nv::neighbors{first.swarm, {{1, true, nv::locality::asn, 5}}, {2}})));
          }
          if constexpr (std::is_same_v<T, nv::have>) FUZZ_REQUIRE(first.blocks.size() <= limits.max_have_blocks);
        }
      },
      message);
  return 0;
}
