#pragma once
// Decoding native protocol frames in tests: the result as the expected message, or as an error
// with the expected code and ref. Shared by the native codec test files.
#include <catch2/catch.hpp>

#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "protocol/native.hpp"

namespace swarmcoord::test::native {

namespace nv = protocol::native;

inline const nv::decode_limits default_limits{};

inline nv::client_message decode(const std::string& text, const nv::decode_limits& l = default_limits) {
  return nv::decode_client_message(text, l);
}
inline nv::client_message decode(const char* text, const nv::decode_limits& l = default_limits) {
  return decode(std::string(text), l);
}
inline nv::client_message decode(const nlohmann::json& j, const nv::decode_limits& l = default_limits) {
  return decode(j.dump(), l);
}

template <class T>
T expect(const nv::client_message& m) {
  if (auto* e = std::get_if<nv::error>(&m)) FAIL("unexpected error " << nv::to_string(e->code) << ": " << e->message);
  REQUIRE(std::holds_alternative<T>(m));
  return std::get<T>(m);
}

inline nv::error expect_error(const nv::client_message& m, nv::error_code code, const std::string& ref) {
  REQUIRE(std::holds_alternative<nv::error>(m));
  const auto& e = std::get<nv::error>(m);
  CHECK(nv::to_string(e.code) == nv::to_string(code));
  CHECK(e.ref == ref);
  CHECK_FALSE(e.message.empty());
  return e;
}

// Every decode result is a message or an error whose encoding is valid JSON; a signal's data
// relays as valid JSON too.
inline void check_decodes_safely(const std::string& text) {
  nv::client_message m;
  REQUIRE_NOTHROW(m = nv::decode_client_message(text, default_limits));
  if (auto* e = std::get_if<nv::error>(&m)) {
    std::string out;
    REQUIRE_NOTHROW(out = nv::encode(*e));
    REQUIRE(nlohmann::json::accept(out));
    CHECK(static_cast<std::size_t>(e->code) < nv::error_code_count);
  } else if (auto* s = std::get_if<nv::signal>(&m)) {
    REQUIRE(nlohmann::json::accept(nv::encode(nv::signal_relay{s->swarm, 1, s->data})));
  }
}

}  // namespace swarmcoord::test::native
