#!/usr/bin/env bash
# preflight.sh: the kernel features Sluice's enforcement tests need, checked
# on this machine. Exits 77 (CTest "skipped") when one is missing, unless
# SLUICE_REQUIRE_KERNEL=1, in which case a missing feature fails the run:
# CI must never pass by skipping the kernel tests.
set -u
missing=()
[ "$(id -u)" -eq 0 ] || missing+=("root")
# mountinfo has a variable number of optional fields before " - fstype".
. "$(dirname "$0")/../lib/cgroup2.sh"
cg2=$(cgroup2_mount)
[ -n "$cg2" ] || missing+=("a cgroup v2 mount in /proc/self/mountinfo")
[ -d /sys/fs/bpf ] || missing+=("/sys/fs/bpf")
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || missing+=("bpffs mounted at /sys/fs/bpf")
[ -r /sys/kernel/btf/vmlinux ] || missing+=("kernel BTF")
command -v nft >/dev/null || missing+=("nft")
if [ "$(id -u)" -eq 0 ]; then
  unshare -n true 2>/dev/null || missing+=("network namespaces (unshare -n)")
  unshare -n nft list tables >/dev/null 2>&1 || missing+=("nftables in a network namespace")
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "kernel preflight: root, cgroup2 at $cg2, bpffs, BTF, nftables, netns: present"
  exit 0
fi
echo "kernel preflight: missing: ${missing[*]}"
if [ "${SLUICE_REQUIRE_KERNEL:-0}" = "1" ]; then
  echo "SLUICE_REQUIRE_KERNEL=1: failing instead of skipping"
  exit 1
fi
exit 77
