#!/usr/bin/env bash
# Installs the Debian 12 packages swarmcoord needs, skipping those already present.
#   deploy/install-deps.sh build   compiler, CMake and the libraries (for `make run`)
#   deploy/install-deps.sh test    build + what the test suites start (for `make test`)
#   deploy/install-deps.sh image   what `make image-test` needs (podman, debootstrap)
#   deploy/install-deps.sh fuzz    build + clang 14 and libFuzzer (for `make fuzz`)
set -euo pipefail

build_pkgs=(g++ cmake ninja-build ccache pkg-config
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libfmt-dev catch2 prometheus-cpp-dev
  libtomlplusplus-dev libcli11-dev libssl-dev libmaxminddb-dev libsimdjson-dev libjwt-dev libjemalloc-dev)
test_pkgs=(nodejs npm iproute2 util-linux openssl curl procps coturn libmaxmind-db-writer-perl
  chromium nginx-light ffmpeg)
image_pkgs=(podman debootstrap buildah fuse-overlayfs uidmap curl)
fuzz_pkgs=(clang-14 libclang-rt-14-dev libfuzzer-14-dev)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  image) want+=("${image_pkgs[@]}") ;;
  fuzz) want+=("${fuzz_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|image|fuzz" >&2; exit 2 ;;
esac

missing=()
for pkg in "${want[@]}"; do
  # A package counts as present when dpkg says it is installed, or (for nodejs/npm, which
  # may come from another repository) when its command exists.
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then continue; fi
  case "$pkg" in nodejs) command -v node >/dev/null && continue ;; npm) command -v npm >/dev/null && continue ;; esac
  missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
