#!/usr/bin/env bash
# loopback-only.sh up|down NAME: a cgroup whose sockets may send to loopback
# and nowhere else, enforced by the kernel: the cgroup NAME under the
# cgroup2 mount (found in /proc/self/mountinfo) and an nftables table
# `inet NAME` that rejects, at the output hook, every packet of a socket
# created in that cgroup to an address other than 127.0.0.0/8 or ::1.
# `make demo` runs sluice-mcpd in such a cgroup, as its systemd unit does
# with IPAddressDeny=any + IPAddressAllow=localhost. `up` prints the
# cgroup's path; `down` removes the table and the (emptied) cgroup.
# Root.
set -euo pipefail
action=$1 name=$2
case "$name" in *[!a-z0-9_-]*|"") echo "loopback-only: bad name '$name'" >&2; exit 2 ;; esac
. "$(dirname "$0")/../lib/cgroup2.sh"
cg2=$(cgroup2_mount)
[ -n "$cg2" ] || { echo "loopback-only: no cgroup2 mount" >&2; exit 1; }
case "$cg2" in
  /sys/fs/cgroup) rel="$name" ;;
  /sys/fs/cgroup/*) rel="${cg2#/sys/fs/cgroup/}/$name" ;;
  *) echo "loopback-only: cgroup2 at $cg2, outside /sys/fs/cgroup (nftables cannot name it)" >&2; exit 1 ;;
esac
case "$action" in
  up)
    mkdir -p "$cg2/$name"
    # Level 1: the cgroup's depth below the cgroup2 root. Rejected, not
    # dropped: the sender fails at once instead of waiting on a lost SYN.
    nft -f - <<NFT
table inet $name {
  chain output {
    type filter hook output priority 0; policy accept;
    socket cgroupv2 level 1 "$rel" meta nfproto ipv4 ip daddr != 127.0.0.0/8 reject with icmpx admin-prohibited
    socket cgroupv2 level 1 "$rel" meta nfproto ipv6 ip6 daddr != ::1 reject with icmpx admin-prohibited
  }
}
NFT
    echo "$cg2/$name"
    ;;
  down)
    nft delete table inet "$name" 2>/dev/null || true
    if [ -d "$cg2/$name" ]; then
      for _ in $(seq 50); do rmdir "$cg2/$name" 2>/dev/null && break; sleep 0.05; done
    fi
    [ ! -d "$cg2/$name" ] || { echo "loopback-only: $cg2/$name still has processes" >&2; exit 1; }
    ;;
  *) echo "usage: loopback-only.sh up|down NAME" >&2; exit 2 ;;
esac
