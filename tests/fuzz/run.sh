#!/usr/bin/env bash
# Runs every fuzz target of a SWARMCOORD_FUZZ build for SECONDS each, starting from its seed
# corpus (tests/fuzz/corpus/<target>), copied to a scratch folder so that the runs never
# write into the repository. A failure leaves its input in BUILD/fuzz-artifacts/<target>/
# (replay: BUILD/tests/fuzz/<target> FILE) and makes the run fail. With FUZZ_CORPUS_OUT set,
# each target's grown corpus is kept in $FUZZ_CORPUS_OUT/<target> (for coverage reports, or to
# pick new seeds from).
#   tests/fuzz/run.sh BUILD SECONDS [target…]
set -euo pipefail
build=$1
seconds=$2
shift 2
here="$(cd "$(dirname "$0")" && pwd)"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_webtorrent fuzz_native fuzz_websocket fuzz_helpers fuzz_swarm_url fuzz_tracker fuzz_mesh)

scratch="$(mktemp -d "${TMPDIR:-/tmp}/swarmcoord-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
for target in "${targets[@]}"; do
  binary="$build/tests/fuzz/$target"
  [ -x "$binary" ] || { echo "no $binary: build with SWARMCOORD_FUZZ=ON first (make fuzz)" >&2; exit 2; }
  corpus="$scratch/$target"
  mkdir -p "$corpus" "$build/fuzz-artifacts/$target"
  cp "$here/corpus/$target/"* "$corpus/"
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1
    -artifact_prefix="$build/fuzz-artifacts/$target/")
  [ -f "$here/$target.dict" ] && options+=(-dict="$here/$target.dict")
  # Per-target flags (a later -max_len wins).
  [ -f "$here/$target.options" ] && read -r -a extra <"$here/$target.options" && options+=("${extra[@]}")
  log="$scratch/$target.log"
  echo "== $target: ${seconds}s"
  if "$binary" "${options[@]}" "$corpus" >"$log" 2>&1; then
    # The last status line (coverage, features, corpus) and the rate.
    grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1 || true
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
    if [ -n "${FUZZ_CORPUS_OUT:-}" ]; then
      rm -rf "${FUZZ_CORPUS_OUT:?}/$target" && mkdir -p "$FUZZ_CORPUS_OUT" && cp -r "$corpus" "$FUZZ_CORPUS_OUT/$target"
    fi
  else
    tail -n 60 "$log"
    echo "!! $target failed: input saved in $build/fuzz-artifacts/$target/"
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]}" >&2
  exit 1
fi
