#!/usr/bin/env bash
# bench/compare.sh: swarmcoord against the reference WebTorrent tracker (npm bittorrent-tracker
# 11.2.3), side by side, on this machine, in one run; prints one table. `make bench` builds
# everything and runs it.
#
# Throughput: build/bench/loadgen, pinned to CPU 0, runs the same WebTorrent workload (see
# loadgen/main.cpp: 2,000 connections, 10 offers per announce, answers for every offer, closed loop)
# against
#   (a) swarmcoord with one worker thread, pinned to CPU 1
#   (b) the reference tracker (bench/reference-tracker.mjs, Node), pinned to CPU 1
#   (c) swarmcoord with two worker threads, unpinned (1 vs 2 workers; on a 2-core machine
#       they share the cores with the loadgen)
# then latency at half load: (a) and (b) again, paced at half of the throughput each reached;
# the latency floor of the machine (one connection, 200 announces/s without offers, against
# (a): what waking an idle CPU costs, which no server can beat); and (unless BENCH_NATIVE=0)
# swarmcoord's native protocol with one pinned worker.
# Idle memory: BENCH_IDLE_CONNECTIONS connections that each announce one peer and then stay
# idle; the RSS growth of the server (VmRSS from /proc/PID/status, before and after) divided by
# the connections, for both servers.
# The last line reads `responses/s swarmcoord=N reference=M ratio=R` (runs (a) and (b)).
#
# Settings (environment):
#   BENCH_DURATION=20           measured seconds per run (after the warm-up)
#   BENCH_WARMUP=5              seconds of load before measuring
#   BENCH_CONNECTIONS=2000      connections of the throughput runs
#   BENCH_LOADGEN_THREADS=1     loadgen threads (all on CPU 0)
#   BENCH_IDLE_CONNECTIONS=10000  connections of the memory runs (0: skip them)
#   BENCH_HALF=1                latency runs at half the maximum throughput (0: skip)
#   BENCH_NATIVE=1              the native-protocol run (0: skip)
#   BENCH_KEEP=0                1: keep the logs of every run (their directory is printed)
# Every server is started here on 127.0.0.1 with port 0 and stopped on exit, whatever happens.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
DAEMON=$BUILD_DIR/swarmcoord
LOADGEN=$BUILD_DIR/bench/loadgen
REFERENCE=$ROOT/bench/reference-tracker.mjs
DURATION=${BENCH_DURATION:-20}
WARMUP=${BENCH_WARMUP:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-2000}
LOADGEN_THREADS=${BENCH_LOADGEN_THREADS:-1}
IDLE_CONNECTIONS=${BENCH_IDLE_CONNECTIONS:-10000}
HALF=${BENCH_HALF:-1}
NATIVE=${BENCH_NATIVE:-1}
KEEP=${BENCH_KEEP:-0}

die() { echo "compare.sh: $*" >&2; exit 1; }
say() { echo "compare.sh: $*" >&2; }

# ---------------------------------------------------------------- prerequisites
[[ $(uname -s) == Linux ]] || die "needs Linux (/proc, taskset)"
for tool in taskset node awk; do
  command -v "$tool" >/dev/null || die "'$tool' not found (taskset is in util-linux; node: Node.js 20)"
done
[[ -x $DAEMON ]] || die "$DAEMON not built: run 'make build-all' (or 'make bench')"
[[ -x $LOADGEN ]] || die "$LOADGEN not built: configure with -DSWARMCOORD_BENCH=ON and run 'make build-all'"
[[ -f $ROOT/tests/node/node_modules/bittorrent-tracker/server.js ]] ||
  die "the reference tracker (tests/node/node_modules/bittorrent-tracker) is not installed: run 'make node-deps'"
taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null ||
  die "needs CPUs 0 and 1 (this machine or cgroup allows: $(taskset -pc $$ | awk '{print $NF}'))"
for n in "$DURATION" "$WARMUP" "$CONNECTIONS" "$LOADGEN_THREADS" "$IDLE_CONNECTIONS"; do
  [[ $n =~ ^[0-9]+$ ]] || die "BENCH_* settings must be whole numbers, got '$n'"
done
(( CONNECTIONS > 0 && DURATION > 0 )) || die "BENCH_CONNECTIONS and BENCH_DURATION must be positive"
# Children inherit the limit: the loadgen and each server hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need_fds=$(( (IDLE_CONNECTIONS > CONNECTIONS ? IDLE_CONNECTIONS : CONNECTIONS) + 256 ))
nofile=$(ulimit -n)
[[ $nofile == unlimited ]] || (( nofile >= need_fds )) ||
  die "open files limited to $nofile, need $need_fds (raise the hard limit: ulimit -Hn / LimitNOFILE)"

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/swarmcoord-bench.XXXXXX")
# Only this shell's own background children that were not reaped yet: their ids can't have
# been reused by anyone else's process.
cleanup() {
  local pid pids
  pids=$(jobs -p)
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $pids; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ $KEEP == 1 ]]; then say "logs kept in $LOGS"; else rm -rf "$LOGS"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The daemon takes every SWARMCOORD_* variable as a config key: keep the caller's out of it.
daemon_env=(env)
while IFS= read -r var; do daemon_env+=(-u "$var"); done < <(compgen -e | grep '^SWARMCOORD_' || true)

# ---------------------------------------------------------------- servers
SERVER_PID=0 SERVER_URL= SERVER_METRICS=

# Waits until file $1 has a line matching $2 (ERE), or process $3 exits, or $4 seconds pass.
wait_for_line() {
  local file=$1 re=$2 pid=$3 limit=$4 waited=0
  until grep -Eq "$re" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    (( waited++ < limit * 10 )) || return 1
    sleep 0.1
  done
}

# start_swarmcoord NAME THREADS [taskset CPU list or ""] [extra --set ...]
start_swarmcoord() {
  local name=$1 threads=$2 cpus=$3; shift 3
  local log=$LOGS/$name.server.log pin=()
  [[ -n $cpus ]] && pin=(taskset -c "$cpus")
  # Limits meant for real clients would throttle a load test: one loadgen connection sends
  # tens of messages a second, and announces into many more swarms than a browser does.
  "${daemon_env[@]}" "${pin[@]}" "$DAEMON" \
    --set server.listen=127.0.0.1:0 --set admin.listen=127.0.0.1:0 \
    --set server.threads="$threads" \
    --set server.max_messages_per_second=1000000 \
    --set tracker.max_peers_per_connection=100000 \
    --set server.max_connections=1000000 \
    --set server.drain_seconds=0 \
    "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  wait_for_line "$log" 'listening public=' "$SERVER_PID" 10 || { tail -20 "$log" >&2; die "swarmcoord ($name) did not start"; }
  local line; line=$(grep -Eo 'listening public=[^ ]+ admin=[^ ]+' "$log" | head -1)
  local public=${line#listening public=}; public=${public%% *}
  SERVER_URL=ws://$public/
  SERVER_METRICS=http://${line##*admin=}/metrics
}

start_reference() {
  local name=$1 cpus=$2
  local log=$LOGS/$name.server.log pin=()
  [[ -n $cpus ]] && pin=(taskset -c "$cpus")
  "${pin[@]}" node --expose-gc "$REFERENCE" >"$log" 2>&1 &
  SERVER_PID=$!
  wait_for_line "$log" 'listening port=' "$SERVER_PID" 15 || { tail -20 "$log" >&2; die "the reference tracker did not start"; }
  SERVER_URL=ws://127.0.0.1:$(grep -Eo 'listening port=[0-9]+' "$log" | head -1 | cut -d= -f2)/
  SERVER_METRICS=
}

stop_server() {
  [[ $SERVER_PID != 0 ]] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=0
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------- runs
declare -A R  # R[run.key] = value from the loadgen's RESULT line

# run_load NAME [loadgen options...]: loadgen on CPU 0 against the current server.
run_load() {
  local name=$1; shift
  local log=$LOGS/$name.loadgen.log metrics=()
  [[ -n $SERVER_METRICS ]] && metrics=(--metrics "$SERVER_METRICS")
  say "$name: $CONNECTIONS connections, ${WARMUP}+${DURATION} s"
  if ! taskset -c 0 "$LOADGEN" --url "$SERVER_URL" --connections "$CONNECTIONS" --threads "$LOADGEN_THREADS" \
      --duration "$DURATION" --warmup "$WARMUP" --server-pid "$SERVER_PID" "${metrics[@]}" "$@" >"$log" 2>"$log.err"; then
    cat "$log" "$log.err" >&2
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$LOGS/$name.server.log" >&2 || true; die "$name: the server died"; }
    die "$name: the loadgen failed"
  fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "$name: the server died during the run"
  local line; line=$(grep '^RESULT ' "$log" | tail -1)
  [[ -n $line ]] || die "$name: no RESULT line from the loadgen"
  local kv
  for kv in ${line#RESULT }; do R[$name.${kv%%=*}]=${kv#*=}; done
  R[$name.crosscheck]=$(grep -Eo '\([+-][0-9.]+%\)' "$log" | tail -1 | tr -d '()' || true)
}

# run_idle NAME KIND: IDLE_CONNECTIONS idle connections with one announced peer each.
run_idle() {
  local name=$1 kind=$2 log=$LOGS/$1.loadgen.log
  say "$name: $IDLE_CONNECTIONS idle connections"
  sleep 1
  [[ $kind == reference ]] && { kill -USR2 "$SERVER_PID"; sleep 1; }
  local before; before=$(rss_kib "$SERVER_PID")
  taskset -c 0 "$LOADGEN" --url "$SERVER_URL" --connections "$IDLE_CONNECTIONS" --idle --duration 600 \
    --open-rate 2000 >"$log" 2>"$log.err" &
  local lg=$!
  wait_for_line "$log" '^IDLE_READY' "$lg" $(( IDLE_CONNECTIONS / 1000 + 60 )) ||
    { cat "$log" "$log.err" >&2; die "$name: the idle connections did not all get their reply"; }
  sleep 2
  [[ $kind == reference ]] && { kill -USR2 "$SERVER_PID"; sleep 1; }
  local after; after=$(rss_kib "$SERVER_PID")
  local ready; ready=$(grep '^IDLE_READY' "$log" | head -1)
  local open; open=$(sed -E 's/.*connections=([0-9]+).*/\1/' <<<"$ready")
  local announced; announced=$(sed -E 's/.*announced=([0-9]+).*/\1/' <<<"$ready")
  kill -TERM "$lg" 2>/dev/null || true
  wait "$lg" 2>/dev/null || true
  R[$name.before]=$before R[$name.after]=$after R[$name.open]=$open R[$name.announced]=$announced
  (( announced > 0 )) && R[$name.per_conn]=$(( (after - before) * 1024 / announced )) || R[$name.per_conn]=0
}

loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
say "logs in $LOGS (machine load average before: $loadavg)"

start_swarmcoord sc1 1 1
run_load sc1
stop_server

start_reference ref 1
run_load ref
stop_server

start_swarmcoord sc2 2 ""
run_load sc2
stop_server

if [[ $HALF == 1 ]]; then
  half_sc=$(( ${R[sc1.rps]} / 2 )) half_ref=$(( ${R[ref.rps]} / 2 ))
  start_swarmcoord sc1half 1 1
  run_load sc1half --rate "$half_sc"
  stop_server
  start_reference refhalf 1
  run_load refhalf --rate "$half_ref"
  stop_server
fi

start_swarmcoord floor 1 1
DURATION=10 WARMUP=1 CONNECTIONS=1 run_load floor --rate 200 --offers 0
stop_server

if [[ $NATIVE == 1 ]]; then
  start_swarmcoord native1 1 1
  run_load native1 --protocol native
  stop_server
fi

if (( IDLE_CONNECTIONS > 0 )); then
  start_swarmcoord scidle 1 1
  run_idle scidle swarmcoord
  stop_server
  start_reference refidle 1
  run_idle refidle reference
  stop_server
fi

# ---------------------------------------------------------------- table
commas() { sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta' <<<"$1"; }
row() {  # row NAME LABEL
  local n=$1 label=$2
  [[ -n ${R[$n.rps]:-} ]] || return 0
  local cpu=${R[$n.server_cpu_pct]:--1} xc=${R[$n.crosscheck]:-} lg=${R[$n.loadgen_cpu_pct]:-0}
  local other=${R[$n.others_cpu_pct]:--1}
  (( other < 0 )) && other=? || other="$other%"
  (( cpu < 0 )) && cpu=? || cpu="$cpu%"
  # A loadgen near a full core may be what limited the run: mark it.
  (( lg >= 90 )) && lg="$lg%*" || lg="$lg%"
  printf "%-44s %11s %9s %9s %9s %9s %7s %8s %7s %9s\n" "$label" "$(commas "${R[$n.rps]}")" \
    "${R[$n.announce_p50_us]}" "${R[$n.announce_p99_us]}" "${R[$n.relay_p50_us]}" "${R[$n.relay_p99_us]}" \
    "$cpu" "$lg" "$other" "${xc:--}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }

loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "$("$DAEMON" --version 2>/dev/null | head -1 || echo swarmcoord) vs bittorrent-tracker 11.2.3 (node $(node --version)), $(nproc) CPUs;" \
  "load average before $loadavg, after $loadavg_after (other work on the machine skews the figures)"
echo "WebTorrent workload: $CONNECTIONS connections, 10 offers/announce (~128-char SDP), 25% seeders, Gamma(0.2,100) over 10,000 swarms;"
echo "${DURATION} s measured after ${WARMUP} s warm-up; loadgen ($LOADGEN_THREADS thread) on CPU 0. Latencies in microseconds."
echo
printf "%-44s %11s %9s %9s %9s %9s %7s %8s %7s %9s\n" "run" "responses/s" "ann p50" "ann p99" "relay p50" "relay p99" \
  "server" "loadgen" "others" "vs metric"
row sc1 "swarmcoord, 1 worker on CPU 1"
row ref "reference tracker on CPU 1"
row sc2 "swarmcoord, 2 workers, unpinned"
[[ $HALF == 1 ]] && row sc1half "swarmcoord, 1 worker, paced at $(commas "$half_sc")/s"
[[ $HALF == 1 ]] && row refhalf "reference, paced at $(commas "$half_ref")/s"
row floor "floor: 1 connection, 200/s, no offers"
[[ $NATIVE == 1 ]] && row native1 "swarmcoord native protocol, 1 worker (join)"
echo "(server/loadgen/others: CPU use over the window, 100% = one core, * = the loadgen may have been the limit;"
echo " others: every other process on the machine, e.g. other jobs competing for the same CPUs;"
echo " 'vs metric': swarmcoord_messages_sent_total delta relative to the responses the loadgen counted;"
echo " floor: the round trip of a lone request, i.e. what waking the idle CPUs costs on this machine;"
echo " native: 'ann' = join -> joined, relay = signal offer -> answer)"
echo
echo "1 vs 2 swarmcoord workers: $(commas "${R[sc1.rps]}") vs $(commas "${R[sc2.rps]}") responses/s (x$(ratio "${R[sc2.rps]}" "${R[sc1.rps]}"))"
if (( IDLE_CONNECTIONS > 0 )); then
  echo
  printf "%-44s %11s %11s %11s %15s\n" "idle memory ($IDLE_CONNECTIONS connections, 1 peer each)" "announced" "RSS before" "RSS after" "per connection"
  for n in scidle refidle; do
    label="swarmcoord, 1 worker"; [[ $n == refidle ]] && label="reference tracker (after a full GC)"
    printf "%-44s %11s %8s KiB %8s KiB %11s B\n" "$label" "$(commas "${R[$n.announced]}")" "$(commas "${R[$n.before]}")" \
      "$(commas "${R[$n.after]}")" "$(commas "${R[$n.per_conn]}")"
  done
fi
echo
echo "targets (issue): >=120,000 responses/s on one worker: $(commas "${R[sc1.rps]}");" \
  ">=5x the reference: x$(ratio "${R[sc1.rps]}" "${R[ref.rps]}");" \
  "$( [[ $HALF == 1 ]] && echo "p99 relay at half load < 2000 us: ${R[sc1half.relay_p99_us]} us;")" \
  "$( (( IDLE_CONNECTIONS > 0 )) && echo "<= 4 KiB per idle connection: $(commas "${R[scidle.per_conn]}") B")"
echo "responses/s swarmcoord=${R[sc1.rps]} reference=${R[ref.rps]} ratio=$(ratio "${R[sc1.rps]}" "${R[ref.rps]}")"
