#!/usr/bin/env bash
# boot.sh BUILD_DIR: sluice-mcpd's shipped units under a real systemd, run
# as PID 1 of private namespaces (these machines have none as PID 1):
# socket activation, Type=notify, the unprivileged user and no
# capabilities, the append-only audit anchors from the tmpfiles snippet,
# and IPAddressDeny=any + IPAddressAllow=localhost enforced by the kernel:
# a process in the service's cgroup cannot reach a non-loopback address
# that a process outside it can, while clients from that address are still
# served through the socket unit's listener. Root; skipped (77) without it,
# failed instead under SLUICE_REQUIRE_KERNEL=1. Removes its cgroups, pass
# or fail.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
skip() {
  echo "systemd_boot: $*"
  [ "${SLUICE_REQUIRE_KERNEL:-0}" = "1" ] && exit 1
  exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd"
. "$here/../lib/cgroup2.sh"
cg2=$(cgroup2_mount)
[ -n "$cg2" ] || skip "no cgroup2 mount"

cg="$cg2/sluice-sd-$$"
instance="slsd$$"   # the agent's: bpffs pins live in the host's bpffs
stage=$(mktemp -d /tmp/sluice-sd-XXXXXX)
holder=
sd=
status=0
cleanup() {
  set +e  # every step below runs, whatever the one before it did
  # unshare --kill-child: its death takes systemd, PID 1 there, and with
  # it every process of the namespace.
  # (unshare ignores SIGTERM while it waits for its child: SIGKILL.)
  if [ -n "$holder" ]; then
    # The agent's pins outlive it by design: stop it (or its tamper check
    # re-pins what is being removed), then uninstall them while the
    # namespace (its netns, its cgroups) still exists.
    if [ -n "$sd" ]; then
      nsenter -t "$sd" -m -p -n -- systemctl stop sluice-agent.service >/dev/null 2>&1
      nsenter -t "$sd" -m -p -n -- /run/sluice-test/build/daemon/sluice-agent \
        --config /run/sluice-test/agent.toml --uninstall >/dev/null 2>&1
    fi
    kill -KILL "$holder" 2>/dev/null || true
    wait "$holder" 2>/dev/null || true
  fi
  if [ -d "/sys/fs/bpf/$instance" ]; then
    for link in "/sys/fs/bpf/$instance"/*/link_*; do
      [ -e "$link" ] && bpftool link detach pinned "$link" 2>/dev/null
    done
    rm -rf "/sys/fs/bpf/$instance"
    echo "systemd_boot: removed leftover pins of $instance" >&2
    status=1
  fi
  # systemd's unit tree outlives it: remove it, deepest first, once empty
  # (cgroup.kill ends whatever might still run there).
  [ -d "$cg" ] && echo 1 >"$cg/cgroup.kill" 2>/dev/null
  for _ in $(seq 100); do
    [ -d "$cg" ] || break
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [ -d "$cg" ] && sleep 0.05
  done
  if [ -d "$cg" ]; then echo "systemd_boot: could not remove $cg" >&2; status=1; fi
  rm -rf "$stage"
  exit $status
}
trap 'status=$?; cleanup' EXIT
fail() { echo "systemd_boot: $*" >&2; exit 1; }

# The user database the namespace sees: the host's, plus what the shipped
# sysusers snippet adds (never written to the host's /etc).
mkdir -p "$stage/root/etc" "$stage/root/usr/lib/sysusers.d"
for f in passwd group shadow gshadow; do cp "/etc/$f" "$stage/root/etc/$f" 2>/dev/null || : >"$stage/root/etc/$f"; done
cp "$src/systemd/sluice.sysusers.conf" "$stage/root/usr/lib/sysusers.d/sluice.conf"
systemd-sysusers --root="$stage/root" >/dev/null 2>&1 || fail "systemd-sysusers failed"

# What an earlier run killed outright (a CTest timeout skips traps) left.
for stale in "$cg2"/sluice-sd-* /sys/fs/bpf/slsd*; do
  [ -e "$stale" ] || continue
  pid=${stale##*-}; pid=${pid##*slsd}
  case "$pid" in ''|*[!0-9]*) continue ;; esac
  kill -0 "$pid" 2>/dev/null && continue
  echo "systemd_boot: removing what run $pid left: $stale"
  if [ -d "$stale/v1" ] || [[ "$stale" == /sys/fs/bpf/* ]]; then
    for link in "$stale"/*/link_*; do [ -e "$link" ] && bpftool link detach pinned "$link" 2>/dev/null || true; done
    rm -rf "$stale"
  else
    echo 1 >"$stale/cgroup.kill" 2>/dev/null || true  # a systemd orphaned with it
    for _ in $(seq 40); do
      find "$stale" -depth -type d -exec rmdir {} \; 2>/dev/null || true
      [ -d "$stale" ] || break
      sleep 0.05
    done
  fi
done

mkdir "$cg"
( echo "$BASHPID" >"$cg/cgroup.procs"
  exec env SLUICE_BUILD="$build" SLUICE_SRC="$src" SLUICE_STAGE="$stage" \
    SLUICE_INSTANCE="$instance" \
    unshare --pid --fork --kill-child=SIGKILL --mount --mount-proc --cgroup --net --uts --ipc \
      "$here/boot-inside.sh"
) >"$stage/systemd.log" 2>&1 &
holder=$!
sd=
for _ in $(seq 100); do
  sd=$(pgrep -P "$holder" || true)
  [ -n "$sd" ] && break
  sleep 0.05
done
[ -n "$sd" ] || { cat "$stage/systemd.log" >&2; fail "systemd did not start"; }
ns() { nsenter -t "$sd" -m -p -n -- "$@"; }
state=
deadline=$((SECONDS + 60))  # the agent loads BPF and nftables on two busy cores
while [ $SECONDS -lt $deadline ]; do
  state=$(ns systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  sleep 0.05
done
[ "$state" = running ] || { ns systemctl --failed --no-pager || true; cat "$stage/systemd.log" >&2; fail "systemd is $state"; }
echo "systemd_boot: systemd $(ns systemctl --version | head -1 | cut -d' ' -f2) is PID 1 of the namespace, state $state"
[ "$(ns systemctl is-active sluice-mcpd.socket)" = active ] || fail "sluice-mcpd.socket is not active"
[ "$(ns systemctl is-active sluice-mcpd.service || true)" != active ] || fail "the service ran before any client"

# The first client starts the service through the socket (Type=notify).
health=$(ns curl -sk --max-time 20 https://127.0.0.1:8443/healthz || true)
[ "$health" = '{"status":"ok"}' ] || { ns systemctl status sluice-mcpd.service --no-pager || true; fail "no answer through the socket unit: '$health'"; }
[ "$(ns systemctl is-active sluice-mcpd.service)" = active ] || fail "sluice-mcpd.service is not active"
pid=$(ns systemctl show -p MainPID --value sluice-mcpd.service)
[ "$(ns ps -o user= -p "$pid" | tr -d ' ')" = sluice-mcpd ] || fail "sluice-mcpd does not run as sluice-mcpd"
caps=$(ns awk '/^Cap(Prm|Eff|Bnd):/ { print $2 }' "/proc/$pid/status" | sort -u)
[ "$caps" = 0000000000000000 ] || fail "sluice-mcpd holds capabilities: $caps"
echo "systemd_boot: socket-activated sluice-mcpd answers as user sluice-mcpd with no capabilities"

ns curl -sk --max-time 10 https://127.0.0.1:8443/metrics | grep -qx 'sluice_mcpd_audit_anchors_append_only 1' ||
  fail "the audit anchor file is not append-only under the unit"
echo "systemd_boot: audit.anchors from the tmpfiles snippet is append-only"

# Egress from the service's cgroup: loopback yes, anything else no. The
# same destination from outside the unit is reachable (a datagram leaves,
# a connect is refused by the stack: nothing listens), so it is the unit's
# rules that deny. systemd's filter drops packets at cgroup egress: a
# datagram fails with EPERM, a TCP SYN is dropped (the connect never
# completes; given 3 s here).
probe=/run/sluice-test/build/tests/netprobe
unit_cg=/sys/fs/cgroup/system.slice/sluice-mcpd.service
out_udp=$(ns timeout 10 "$probe" udp 192.0.2.1 9 || true)
out_tcp=$(ns timeout 10 "$probe" tcp 192.0.2.1 9 || true)
in_udp=$(ns timeout 10 "$probe" --cgroup "$unit_cg" udp 192.0.2.1 9 || true)
in_tcp=$(ns timeout 3 "$probe" --cgroup "$unit_cg" tcp 192.0.2.1 9 || true)
in_loop=$(ns timeout 10 "$probe" --cgroup "$unit_cg" tcp 127.0.0.1 8443 || true)
echo "systemd_boot: to 192.0.2.1 from outside the unit: udp '$out_udp', tcp '$out_tcp'"
echo "systemd_boot: from sluice-mcpd's cgroup: udp '$in_udp', tcp '${in_tcp:-no answer in 3 s}'; to 127.0.0.1:8443 '$in_loop'"
[ "$out_udp" = ok ] && [ "$out_tcp" = "errno 111 ECONNREFUSED" ] || fail "the control probes should reach 192.0.2.1"
[ "$in_udp" = "errno 1 EPERM" ] || fail "a datagram left sluice-mcpd's cgroup for a non-loopback address: '$in_udp'"
[ "$in_tcp" != ok ] && [ "$in_tcp" != "errno 111 ECONNREFUSED" ] || fail "a TCP connect from sluice-mcpd's cgroup reached 192.0.2.1: '$in_tcp'"
[ "$in_loop" = ok ] || fail "sluice-mcpd's cgroup could not reach loopback: '$in_loop'"

# Clients from a non-loopback address come in through the socket unit's
# listener, which the service's IPAddressDeny does not cover.
remote=$(ns curl -sk --max-time 10 --interface 192.0.2.1 https://192.0.2.1:8443/healthz || true)
[ "$remote" = '{"status":"ok"}' ] || fail "a client from 192.0.2.1 was not served: '$remote'"
echo "systemd_boot: a client from 192.0.2.1 is served; sluice-mcpd's own sockets reach loopback only"

# sluice-agent under its shipped unit (Type=notify: active means both
# layers enforce), and the product path through both units: a policy set
# through sluice-mcpd's admin socket is pushed to the agent by mcpd (as
# user sluice-mcpd) and enforced in the kernel before sluicectl returns.
[ "$(ns systemctl is-active sluice-agent.service)" = active ] || {
  ns systemctl status sluice-agent.service --no-pager || true; fail "sluice-agent.service is not active"; }
ctl=/run/sluice-test/build/mcpd/sluicectl/sluicectl
ns "$ctl" agent --socket /run/sluice/agent.sock status >/dev/null || fail "the agent does not answer"
key=$(ns "$ctl" bootstrap --socket /run/sluice-mcpd/mcpd-admin.sock --tenant acme --user alice \
  --data-source /run/sluice-test/bank.db | sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
[ -n "$key" ] || fail "bootstrap through the admin socket failed"
ns "$probe" listen 11434 120 >/dev/null 2>&1 &   # the tenant's on-prem "LLM"; dies with the namespace
disown
for _ in $(seq 100); do ns "$probe" tcp 127.0.0.1 11434 | grep -qx ok && break; sleep 0.05; done
set +e
pushed=$(printf '%s' '{"allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": false}' |
  ns "$ctl" tenant-policy set --socket /run/sluice-mcpd/mcpd-admin.sock --tenant acme -)
rc=$?
set -e
grep -q '"kernel": "enforced"' <<<"$pushed" && [ "$rc" -eq 0 ] || { echo "$pushed" >&2; fail "the policy was not enforced (rc $rc)"; }
tenant_cg="/sys/fs/cgroup/$instance/tenants/acme/llm"
llm=$(ns timeout 10 "$probe" --cgroup "$tenant_cg" tcp 127.0.0.1 11434 || true)
other=$(ns timeout 10 "$probe" --cgroup "$tenant_cg" tcp 127.0.0.1 8443 || true)
echo "systemd_boot: tenant acme's llm cgroup: to its endpoint '$llm', elsewhere '$other'"
[ "$llm" = ok ] || fail "the tenant could not reach its allowed endpoint: '$llm'"
[[ "$other" =~ ^errno\ [0-9]+\ EPERM$ ]] || fail "the tenant reached a destination its policy does not allow: '$other'"
echo "systemd_boot: sluice-agent under its unit enforces what sluice-mcpd, as user sluice-mcpd, pushed"

# The main job under the unit: an MCP session and a query over the
# tenant's data, audited; stopping the service anchors the chain's head,
# and the log verifies against the append-only anchor file.
mcp() {
  ns curl -sk --max-time 20 https://127.0.0.1:8443/mcp -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' "$@"
}
session=$(mcp -D - -o /dev/null \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"boot.sh","version":"1"}}}' |
  tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')
[ -n "$session" ] || fail "no MCP session under the unit"
answer=$(mcp -H "Mcp-Session-Id: $session" -H 'MCP-Protocol-Version: 2025-11-25' \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_query","arguments":{"sql":"SELECT count(*) AS n FROM customers"}}}')
grep -q '"isError":false' <<<"$answer" && grep -q '"rows":\[\[50\]\]' <<<"$answer" ||
  fail "run_query under the unit: $answer"
ns systemctl stop sluice-mcpd.service 2>/dev/null  # (the socket stays: a warning says so)
verdict=$(ns "$ctl" audit verify --db /var/lib/sluice/mcpd.db) || fail "audit verify: $verdict"
grep -q "anchors in /var/lib/sluice/audit.anchors match" <<<"$verdict" || fail "audit verify did not use the anchors: $verdict"
echo "systemd_boot: a query over MCP under the unit, audited; $verdict"
