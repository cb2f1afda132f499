#!/usr/bin/env bash
# Runs a command in a fresh network namespace with only loopback up: the test can open
# sockets and WebRTC connections on 127.0.0.1, and nothing can leave the machine.
# With --veth, a veth pair 192.168.77.1/24 and a default route are added too (Chromium
# gathers no ICE candidate without a default route); both ends stay inside the namespace.
set -euo pipefail
if [ "${SWARMCOORD_IN_NETNS:-}" != 1 ]; then
  export SWARMCOORD_IN_NETNS=1
  exec unshare --net --map-root-user -- "$0" "$@"
fi
ip link set lo up
if [ "${1:-}" = --veth ]; then
  shift
  ip link add v0 type veth peer name v1
  ip addr add 192.168.77.1/24 dev v0
  ip link set v0 up
  ip link set v1 up
  ip route add default via 192.168.77.2 dev v0
fi
exec "$@"
