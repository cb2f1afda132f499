#!/usr/bin/env bash
# Builds the container image with podman and smoke-tests it without a container runtime
# (`podman run` does not work on the project's machines): the image is mounted and its
# binary run under chroot, with the image's own user, environment, entrypoint and command.
#   deploy/image-test.sh          (make image-test installs podman & co. first)
# 1. base image: docker.io/library/debian:bookworm-slim is made with debootstrap from the
#    Debian mirror apt uses here (no registry is reachable) and kept between runs;
#    REBUILD_BASE=1 makes it anew, MIRROR=URL picks another mirror.
# 2. podman build --isolation=chroot --format docker -t $IMAGE (default swarmcoord:test).
# 3. checks: image config (user, ports, healthcheck, env, entrypoint), --version, the
#    daemon serving /healthz and /metrics, SIGTERM -> exit 0, the HEALTHCHECK command, and
#    configuration by a mounted file and by the environment.
# Ends with a PASS or FAIL line; exits non-zero on failure. Needs root (or sudo).
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-swarmcoord:test}
BASE=docker.io/library/debian:bookworm-slim
SUITE=bookworm
started=$(date +%s)

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -E "$0" "$@"; fi
  echo "image-test: needs root (chroot, mounts, debootstrap); run as root or with sudo" >&2
  echo "image-test: FAIL"
  exit 1
fi
for tool in podman debootstrap chroot curl tar; do
  command -v "$tool" >/dev/null || {
    echo "image-test: $tool missing (deploy/install-deps.sh image)" >&2
    echo "image-test: FAIL"
    exit 1
  }
done

work=$(mktemp -d /var/tmp/swarmcoord-image-test.XXXXXX)
mnt=""
mounts=()   # mounted inside $mnt, unmounted in reverse order
daemon_pid=""
result=FAIL
size=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -KILL "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}"
  done
  [ -n "$mnt" ] && podman image unmount "$IMAGE" >/dev/null
  rm -rf "$work"
  [ "$result" = PASS ] || rc=1
  [ "$rc" -eq 0 ] || result=FAIL
  echo "image-test: $result ($IMAGE${size:+, $size}, $(($(date +%s) - started)) s)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { echo "image-test: == $*"; }
fail() {
  echo "image-test: FAILED: $*" >&2
  exit 1
}

# The first URI of an apt source that has `deb` for suite $1: deb822 (*.sources) first,
# then one-line (sources.list, *.list) entries.
apt_mirror() {
  local suite=$1 f uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$suite" 'BEGIN { RS = "" }
      { types = ""; suites = ""; uris = ""
        n = split($0, line, "\n")
        for (i = 1; i <= n; i++) {
          l = line[i]
          if (l ~ /^Types:/) types = " " substr(l, 7) " "
          else if (l ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", l); suites = " " l " " }
          else if (l ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", l); uris = l }
        }
        if (types ~ /[ \t]deb[ \t]/ && index(suites, " " suite " ")) { split(uris, u, " "); print u[1]; exit }
      }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk -v suite="$suite" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
}

# ---- 1. base image ------------------------------------------------------------------
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE"; then
  step "base image $BASE exists (REBUILD_BASE=1 to make it anew)"
else
  mirror=${MIRROR:-$(apt_mirror "$SUITE")}
  mirror=${mirror:-http://deb.debian.org/debian}
  security=$(apt_mirror "$SUITE-security")
  security=${security:-http://deb.debian.org/debian-security}
  step "base image: debootstrap --variant=minbase $SUITE from $mirror"
  base_started=$(date +%s)
  rootfs=$work/rootfs
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    fail "debootstrap (log above)"
  }
  # Make it like the official slim image: apt sources in deb822 form with updates and
  # security, no docs/man pages/locales (nor later installs of them), no apt caches.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/* \
    "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname" "$rootfs"/var/cache/debconf/*-old
  tar --numeric-owner --xattrs -C "$rootfs" -cf "$work/rootfs.tar" .
  rm -rf "$rootfs"
  podman image rm -f "$BASE" >/dev/null 2>&1 || true
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase $SUITE $mirror" \
    "$work/rootfs.tar" "$BASE" >/dev/null
  rm -f "$work/rootfs.tar"
  podman image exists "$BASE" || fail "podman import did not make $BASE"
  echo "image-test: base image made in $(($(date +%s) - base_started)) s"
fi

# ---- 2. build -----------------------------------------------------------------------
# --format docker keeps HEALTHCHECK (OCI image config has no such field); --pull=never: the
# base is the local one above, no registry is asked.
step "podman build --isolation=chroot --format docker -t $IMAGE"
build_started=$(date +%s)
podman build --isolation=chroot --format docker --pull=never -t "$IMAGE" -f Dockerfile . 2>&1 |
  sed -u 's/^/  | /' || fail "podman build"
echo "image-test: built in $(($(date +%s) - build_started)) s"
podman image ls "$IMAGE"
size=$(podman image ls --format '{{.Size}}' "$IMAGE" | head -n1)

# ---- 3. image configuration -----------------------------------------------------------
step "image configuration"
inspect() { podman image inspect --format "$1" "$IMAGE"; }
user=$(inspect '{{.Config.User}}')
ports=$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')
stopsignal=$(inspect '{{.Config.StopSignal}}')
mapfile -t env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t entrypoint < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t cmd < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t health < <(inspect '{{if .HealthCheck}}{{range .HealthCheck.Test}}{{println .}}{{end}}{{end}}' | sed '/^$/d')
echo "  User=$user ExposedPorts=$ports StopSignal=$stopsignal"
echo "  Entrypoint=${entrypoint[*]} Cmd=${cmd[*]}"
echo "  Env=${env[*]}"
echo "  Healthcheck=${health[*]}"
case "$user" in
  "" | 0 | 0:* | root | root:*) fail "image user is root (User='$user')" ;;
esac
[[ " $ports" == *" 8000/tcp "* && " $ports" == *" 9100/tcp "* ]] || fail "ExposedPorts '$ports' lack 8000/tcp and 9100/tcp"
[[ "$stopsignal" == SIGTERM || "$stopsignal" == TERM || "$stopsignal" == 15 ]] || fail "StopSignal '$stopsignal'"
[ "${entrypoint[*]}" = /usr/local/bin/swarmcoord ] || fail "Entrypoint '${entrypoint[*]}'"
[ "${cmd[*]}" = "--config /etc/swarmcoord/swarmcoord.toml" ] || fail "Cmd '${cmd[*]}'"
printf '%s\n' "${env[@]}" | grep -qx 'SWARMCOORD_ADMIN_LISTEN=0.0.0.0:9100' || fail "Env lacks SWARMCOORD_ADMIN_LISTEN=0.0.0.0:9100"
[ ${#health[@]} -ge 2 ] || fail "no HEALTHCHECK in the image (built in OCI format?)"
[[ "${health[*]}" == *127.0.0.1*8000*healthz* ]] || fail "HEALTHCHECK does not probe 127.0.0.1:8000/healthz"

mnt=$(podman image mount "$IMAGE")
[ -x "$mnt/usr/local/bin/swarmcoord" ] || fail "no /usr/local/bin/swarmcoord in the image"
[ -r "$mnt/etc/swarmcoord/swarmcoord.toml" ] || fail "no /etc/swarmcoord/swarmcoord.toml in the image"
grep -q '^swarmcoord:' "$mnt/etc/passwd" || fail "no user swarmcoord in the image's /etc/passwd"
du -sh "$mnt" | sed 's/^/  image content: /'

# In the image as a container runtime would run it: the image's user and environment only.
in_image() { env -i "${env[@]}" chroot --userspec="$user" "$mnt" "$@"; }

# ---- 4. the binary --------------------------------------------------------------------
step "swarmcoord --version"
version=$(in_image "${entrypoint[@]}" --version) || fail "--version in the image"
echo "  $version"
[[ "$version" == swarmcoord\ * ]] || fail "unexpected --version output '$version'"

mount -t proc proc "$mnt/proc"
mounts+=("$mnt/proc")

step "daemon: ${entrypoint[*]} ${cmd[*]} --set server.listen=127.0.0.1:0 --set admin.listen=127.0.0.1:0"
log=$work/daemon.log
# A simple command (not the function): env and chroot exec, so $! is the daemon itself.
env -i "${env[@]}" chroot --userspec="$user" "$mnt" "${entrypoint[@]}" "${cmd[@]}" \
  --set server.listen=127.0.0.1:0 --set admin.listen=127.0.0.1:0 >"$log" 2>&1 &
daemon_pid=$!
line=""
for _ in $(seq 100); do
  line=$(grep -m1 'listening public=' "$log" || true)
  [ -n "$line" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$log" >&2; fail "the daemon exited at startup"; }
  sleep 0.1
done
[ -n "$line" ] || { cat "$log" >&2; fail "no 'listening' line within 10 s"; }
echo "  $line"
public=$(sed -E 's/.* public=([^ ]+) .*/\1/' <<<"$line")
admin=$(sed -E 's/.* admin=([^ ]+) .*/\1/' <<<"$line")
[[ "$public" == 127.0.0.1:* && "$admin" == 127.0.0.1:* ]] || fail "cannot read the listening line"

uid=$(awk '/^Uid:/ { print $2 }' "/proc/$daemon_pid/status")
echo "  running as uid $uid"
[ "$uid" = "${user%%:*}" ] && [ "$uid" != 0 ] || fail "the daemon runs as uid $uid, not as the image's user $user"

body=$(curl -fsS --max-time 5 "http://$public/healthz") || fail "GET http://$public/healthz"
echo "  GET /healthz (public): $(head -c 80 <<<"$body")"
curl -fsS --max-time 5 "http://$admin/metrics" >"$work/metrics" || fail "GET http://$admin/metrics"
grep -q '^swarmcoord_' "$work/metrics" || fail "/metrics has no swarmcoord_ metric"
grep -q '^process_resident_memory_bytes' "$work/metrics" || fail "/metrics has no process metrics (/proc)"
echo "  GET /metrics (admin): $(grep -c '^[a-z]' "$work/metrics") samples"
curl -fsS --max-time 5 "http://$admin/readyz" >/dev/null || fail "GET http://$admin/readyz"

# The HEALTHCHECK command itself, run in the image, with the port the daemon got.
port=${public##*:}
probe=("${health[@]:1}")
probe=("${probe[@]//\/8000/\/$port}")
probe=("${probe[@]//:8000/:$port}")
if [ "${health[0]}" = CMD-SHELL ]; then probe=(/bin/sh -c "${probe[*]}"); fi
step "HEALTHCHECK command against port $port"
in_image "${probe[@]}" || fail "the HEALTHCHECK command fails against a healthy daemon"
echo "  healthy"

step "SIGTERM"
kill -TERM "$daemon_pid"
rc=""
for _ in $(seq 300); do
  kill -0 "$daemon_pid" 2>/dev/null || { wait "$daemon_pid" && rc=0 || rc=$?; break; }
  sleep 0.1
done
[ -n "$rc" ] || { cat "$log" >&2; fail "the daemon did not exit within 30 s of SIGTERM"; }
daemon_pid=""
tail -n 2 "$log" | sed 's/^/  /'
[ "$rc" -eq 0 ] || { cat "$log" >&2; fail "exit code $rc after SIGTERM"; }
echo "  exit code 0"
if in_image "${probe[@]}" 2>/dev/null; then fail "the HEALTHCHECK command passes with no daemon"; fi
echo "  HEALTHCHECK command fails with the daemon gone, as it should"

# ---- 5. configuration by a mounted file and by the environment -----------------------
step "configuration: mounted file, then environment over it"
printf '[log]\nlevel = "warn"\n\n[tracker]\nmax_offers = 7\n' >"$work/mounted.toml"
chmod 0644 "$work/mounted.toml"
mount --bind "$work/mounted.toml" "$mnt/etc/swarmcoord/swarmcoord.toml"
mounts+=("$mnt/etc/swarmcoord/swarmcoord.toml")
in_image "${entrypoint[@]}" "${cmd[@]}" --print-config >"$work/print1" || fail "--print-config with a mounted file"
grep -qx 'level = "warn"' "$work/print1" && grep -qx 'max_offers = 7' "$work/print1" ||
  fail "the mounted config file is not read"
grep -qx 'listen = "0.0.0.0:9100"' "$work/print1" || fail "admin.listen is not 0.0.0.0:9100 from the image's environment"
echo "  mounted file read; admin.listen = 0.0.0.0:9100 from the image's ENV"
env -i "${env[@]}" SWARMCOORD_TRACKER_MAX_OFFERS=9 SWARMCOORD_SERVER_LISTEN=0.0.0.0:8080 \
  chroot --userspec="$user" "$mnt" "${entrypoint[@]}" "${cmd[@]}" --print-config >"$work/print2" ||
  fail "--print-config with environment overrides"
grep -qx 'max_offers = 9' "$work/print2" && grep -qx 'listen = "0.0.0.0:8080"' "$work/print2" ||
  fail "environment overrides are not applied"
echo "  environment overrides applied"
env -i "${env[@]}" chroot --userspec="$user" "$mnt" "${entrypoint[@]}" --print-config >"$work/print3" ||
  fail "--print-config without a config file"
grep -qx 'listen = "0.0.0.0:8000"' "$work/print3" || fail "no-file defaults"
echo "  runs without a config file on defaults"

result=PASS
