#!/usr/bin/env bash
# run-in-netns.sh BINARY [ARGS...]: runs the kernel tests inside a private
# network namespace with only `lo` up, then removes whatever a crashed test
# may have left behind (bpffs pins and cgroups of its instances; the
# namespace takes its nftables tables with it).
#
# Needs root. Without it the tests are skipped (77), unless
# SLUICE_REQUIRE_KERNEL=1, in which case they fail: CI never passes by skipping.
set -u
if [ "$(id -u)" -ne 0 ]; then
  echo "kernel tests need root"
  [ "${SLUICE_REQUIRE_KERNEL:-0}" = "1" ] && exit 1
  exit 77
fi
export SLUICE_TEST_PREFIX="slt$$"
unshare -n -- bash -c '
  ip link set lo up || exit 1
  # Lets unprivileged ping sockets exist in this namespace, so the test can
  # show it is the tenant hook (not the sysctl) that refuses them.
  echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range
  exec "$@"' bash "$@"
status=$?

. "$(dirname "$0")/../lib/cgroup2.sh"
cg2=$(cgroup2_mount)
for dir in /sys/fs/bpf/${SLUICE_TEST_PREFIX}n*; do
  [ -e "$dir" ] || continue
  echo "cleanup: leftover $dir"
  for link in "$dir"/*/link_*; do [ -e "$link" ] && bpftool link detach pinned "$link" 2>/dev/null; done
  rm -rf "$dir"
  status=1
done
for dir in "$cg2"/${SLUICE_TEST_PREFIX}n*; do
  [ -e "$dir" ] || continue
  echo "cleanup: leftover cgroup $dir"
  find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
  status=1
done
rm -rf /tmp/${SLUICE_TEST_PREFIX}n* /dev/shm/${SLUICE_TEST_PREFIX}n*
exit $status
