#pragma once
// What every fuzz target uses to fail: a violated property prints what broke and traps, so that
// libFuzzer saves the input as a crash artifact.
#include <cstdio>
#include <string_view>

namespace swarmcoord::fuzz {

[[noreturn]] inline void violated(const char* property, std::string_view detail, const char* file, int line) {
  std::fprintf(stderr, "\n%s:%d: property violated: %s\n", file, line, property);
  if (!detail.empty()) std::fprintf(stderr, "  %.*s\n", static_cast<int>(detail.size()), detail.data());
  std::fflush(stderr);
  __builtin_trap();
}

}  // namespace swarmcoord::fuzz

// FUZZ_REQUIRE(cond) / FUZZ_REQUIRE_MSG(cond, detail): detail is anything convertible to string_view.
#define FUZZ_REQUIRE(cond) \
  ((cond) ? void() : ::swarmcoord::fuzz::violated(#cond, {}, __FILE__, __LINE__))
#define FUZZ_REQUIRE_MSG(cond, detail) \
  ((cond) ? void() : ::swarmcoord::fuzz::violated(#cond, (detail), __FILE__, __LINE__))
