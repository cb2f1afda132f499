// The runtime options of a sanitize build (SWARMCOORD_SANITIZE), linked into every executable
// so that the daemon run by a Node suite, the unit tests run by ctest and a binary run by hand
// all behave alike; ASAN_OPTIONS / UBSAN_OPTIONS in the environment still override them.
// abort_on_error: a finding ends the process with SIGABRT, which no exit code of the daemon's
// own can be mistaken for. UBSan stops at its first report (built with -fno-sanitize-recover).

extern "C" const char* __asan_default_options() {
  return "halt_on_error=1:abort_on_error=1:detect_leaks=1:check_initialization_order=1";
}

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:abort_on_error=1:print_stacktrace=1";
}
