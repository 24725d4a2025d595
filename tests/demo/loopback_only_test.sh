#!/usr/bin/env bash
# loopback_only_test.sh BUILD_DIR: the cgroup `make demo` runs sluice-mcpd
# in lets its sockets reach loopback and nothing else. In a private network
# namespace with 192.0.2.1 on its own lo as the "remote" address: from
# outside the cgroup that address is reachable; from inside, datagrams fail
# with EPERM and connects with EHOSTUNREACH (IPv4, and IPv4 through an
# AF_INET6 socket), while 127.0.0.1 and ::1 are reached. Root; skipped (77)
# without it, failed instead under SLUICE_REQUIRE_KERNEL=1.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
if [ "${2:-}" != "--inside" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "demo_loopback_only: needs root"
    [ "${SLUICE_REQUIRE_KERNEL:-0}" = "1" ] && exit 1
    exit 77
  fi
  exec unshare -n -- "$0" "$build" --inside
fi
ip link set lo up
ip addr add 192.0.2.1/32 dev lo
probe="$build/tests/netprobe"
name="sluice-lotest-$$"
listener=
cleanup() {
  [ -n "$listener" ] && { kill "$listener" 2>/dev/null || true; wait "$listener" 2>/dev/null || true; }
  "$here/loopback-only.sh" down "$name"
}
trap cleanup EXIT
fail() { echo "demo_loopback_only: $*" >&2; exit 1; }
cg=$("$here/loopback-only.sh" up "$name")
"$probe" listen 18080 60 >/dev/null &
listener=$!
for _ in $(seq 100); do "$probe" tcp 127.0.0.1 18080 | grep -qx ok && break; sleep 0.02; done
check() {  # check EXPECTED ARGS...: one probe, its answer compared
  local want=$1; shift
  local got
  got=$("$probe" "$@" || true)
  echo "  $* -> $got"
  [ "$got" = "$want" ] || fail "$*: expected '$want', got '$got'"
}
echo "outside the cgroup:"
check ok udp 192.0.2.1 9
check "errno 111 ECONNREFUSED" tcp 192.0.2.1 9
echo "inside it:"
check "errno 1 EPERM" --cgroup "$cg" udp 192.0.2.1 9
check "errno 113 EHOSTUNREACH" --cgroup "$cg" tcp 192.0.2.1 9
check "errno 113 EHOSTUNREACH" --cgroup "$cg" tcp6 192.0.2.1 9
check ok --cgroup "$cg" tcp 127.0.0.1 18080
check "errno 111 ECONNREFUSED" --cgroup "$cg" tcp ::1 9
echo "demo_loopback_only: sockets of $cg reach loopback only"
