#!/usr/bin/env bash
# units.sh BUILD_DIR: the shipped systemd units and install snippets.
#  1. systemd-analyze security scores both services offline, under a ceiling,
#     and the directives the design relies on are there.
#  2. The shipped configurations pass the daemons' own --check.
#  3. As root: sysusers and tmpfiles laid out in a scratch root create the
#     mcpd user and an append-only audit.anchors it owns; sluice-mcpd run as
#     that uid appends chain heads to it and reports it append-only, and the
#     same uid cannot truncate it.
# Everything lives in a temporary directory, removed on exit, pass or fail.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
units="$here/../../systemd"   # snippets and configurations
generated="$build/systemd"     # the units, configured with the install paths
fail() { echo "systemd_units: $*" >&2; exit 1; }

# --- 1. exposure scores and required directives -------------------------------
for unit in sluice-agent.service:4.0 sluice-mcpd.service:2.0; do
  name=${unit%%:*} ceiling=${unit##*:}
  score=$(systemd-analyze security --offline=true "$generated/$name" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  [ -n "$score" ] || fail "no exposure score for $name"
  echo "systemd_units: $name exposure $score (ceiling $ceiling)"
  systemd-analyze security --offline=true --threshold="$(awk -v c="$ceiling" 'BEGIN { print c * 10 }')" \
    "$generated/$name" >/dev/null 2>&1 || fail "$name scores $score, over $ceiling"
done
need() {
  local file="$generated/$1"
  [ -e "$file" ] || file="$units/$1"
  grep -qx -- "$2" "$file" || fail "$1 lacks '$2'"
}
need sluice-mcpd.service 'IPAddressDeny=any'
need sluice-mcpd.service 'LimitCORE=0'
need sluice-mcpd.service 'MemorySwapMax=0'
need sluice-mcpd.service 'IPAddressAllow=localhost'
need sluice-mcpd.service 'RestrictAddressFamilies=AF_UNIX'
need sluice-mcpd.service 'CapabilityBoundingSet='
need sluice-mcpd.service 'User=sluice-mcpd'
need sluice-mcpd.service 'Requires=sluice-mcpd.socket'
need sluice-mcpd.service 'Type=notify'
need sluice-agent.service 'Type=notify'
need sluice.tmpfiles.conf 'h /var/lib/sluice/audit.anchors - - - - +a'

# --- 2. shipped configurations ------------------------------------------------
"$build/mcpd/server/sluice-mcpd" --config "$units/mcpd.toml" --check >/dev/null || fail "systemd/mcpd.toml refused"
"$build/daemon/sluice-agent" --config "$units/agent.toml" --check >/dev/null || fail "systemd/agent.toml refused"

# --- 3. the install layout, for real ------------------------------------------
skip() {
  echo "systemd_units: $*; the install layout part skipped"
  [ "${SLUICE_REQUIRE_KERNEL:-0}" = "1" ] && exit 1
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root"
root=$(mktemp -d /tmp/sluice-units-XXXXXX)
chmod 0755 "$root"  # the mcpd uid walks through it
mcpd=
cleanup() {
  [ -n "$mcpd" ] && { kill "$mcpd" 2>/dev/null || true; wait "$mcpd" 2>/dev/null || true; }
  pkill -f "$root/etc/mcpd.toml" 2>/dev/null || true
  chattr -a "$root/var/lib/sluice/audit.anchors" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" "$root/run"
# The host's users and groups first, so the uid sysusers picks is one no
# service of this machine already runs as.
for f in passwd group shadow gshadow; do cp "/etc/$f" "$root/etc/$f" 2>/dev/null || : >"$root/etc/$f"; done
cp "$units/sluice.sysusers.conf" "$root/usr/lib/sysusers.d/sluice.conf"
cp "$units/sluice.tmpfiles.conf" "$root/usr/lib/tmpfiles.d/sluice.conf"
systemd-sysusers --root="$root" >/dev/null 2>&1 || fail "systemd-sysusers failed"
uid=$(awk -F: '$1 == "sluice-mcpd" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "sluice-mcpd" { print $4 }' "$root/etc/passwd")
[ -n "$uid" ] && [ "$uid" -ne 0 ] || fail "sysusers made no unprivileged sluice-mcpd user"
systemd-tmpfiles --root="$root" --create >/dev/null 2>&1 || fail "systemd-tmpfiles failed"
anchors="$root/var/lib/sluice/audit.anchors"
[ "$(stat -c %u:%a "$anchors")" = "$uid:640" ] || fail "audit.anchors is $(stat -c %u:%a "$anchors"), not $uid:640"
lsattr "$anchors" 2>/dev/null | cut -d' ' -f1 | grep -q a || skip "this file system keeps no append-only attribute"
as_mcpd() { setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all -- "$@"; }
install -d -o "$uid" -g "$gid" -m 0750 "$root/run/sluice-mcpd"
sed -e "s|/var/lib/sluice|$root/var/lib/sluice|; s|/run/sluice-mcpd|$root/run/sluice-mcpd|; s|^listen_port = .*|listen_port = 0|; s|^journal = true|journal = false|" \
  "$units/mcpd.toml" >"$root/etc/mcpd.toml"
# Not through as_mcpd: a function in the background is a subshell, and
# its pid is not mcpd's.
setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all --bounding-set=-all -- \
  "$build/mcpd/server/sluice-mcpd" --config "$root/etc/mcpd.toml" >"$root/mcpd.out" 2>&1 &
mcpd=$!
for _ in $(seq 100); do
  grep -q "admin socket" "$root/mcpd.out" 2>/dev/null && break
  kill -0 "$mcpd" 2>/dev/null || { cat "$root/mcpd.out" >&2; fail "sluice-mcpd did not start as uid $uid"; }
  sleep 0.1
done
grep -q "audit anchors .*(append-only)" "$root/mcpd.out" || { cat "$root/mcpd.out" >&2; fail "mcpd did not see an append-only anchor file"; }
# Bootstrapping writes admin records; stopping anchors the head.
"$build/mcpd/sluicectl/sluicectl" bootstrap --socket "$root/run/sluice-mcpd/mcpd-admin.sock" --tenant acme \
  --user alice --data-source /nonexistent.db >/dev/null 2>&1 || true
kill "$mcpd"; wait "$mcpd" 2>/dev/null || true; mcpd=
pgrep -f "$root/etc/mcpd.toml" >/dev/null && fail "sluice-mcpd did not stop on SIGTERM"
[ -s "$anchors" ] || fail "sluice-mcpd wrote no anchor"
"$build/mcpd/sluicectl/sluicectl" audit verify --db "$root/var/lib/sluice/mcpd.db" | grep -q "anchors in $anchors match" ||
  fail "audit verify did not match the anchors"
if as_mcpd sh -c ': > "$1"' sh "$anchors" 2>/dev/null; then fail "the mcpd user truncated audit.anchors"; fi
if as_mcpd rm -f "$anchors" 2>/dev/null && [ ! -e "$anchors" ]; then fail "the mcpd user removed audit.anchors"; fi
echo "systemd_units: sysusers + tmpfiles give sluice-mcpd an append-only audit.anchors it can add to but not cut"
