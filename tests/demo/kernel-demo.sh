#!/usr/bin/env bash
# kernel-demo.sh BUILD_DIR: runs inside a private network namespace (see
# demo.sh). A demo tenant's LLM endpoint on loopback; its policy goes in
# through sluice-mcpd (sluicectl tenant-policy), which pushes it to
# sluice-agent: the kernel allows the endpoint, refuses everything else,
# cuts a live connection when allow_llm_egress is switched off, and a
# change made while the agent is down is reported pending, never enforced.
set -uo pipefail
build=$1
top=$(cd "$(dirname "$0")/../.." && pwd)
ctl="$build/mcpd/sluicectl/sluicectl"
probe="$build/tests/netprobe"
run=/dev/shm/sluice-demo
mkdir -p "$run"
cfg="$run/agent.toml"
cat >"$cfg" <<CFG
instance = "sluicedemo"
runtime_dir = "$run/run"
allow_loopback = true     # the demo's "LLM" listens on loopback
tamper_check_ms = 1000
[network]
internal_networks = ["10.0.0.0/8"]
CFG
cat >"$run/endpoints.json" <<'JSON'
{"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["http://127.0.0.1:11434"]}}
JSON
sed 's/"allow_llm_egress": false/"allow_llm_egress": true/' "$top/policy/examples/tenant-policy-internal.json" >"$run/open.json"
cp "$top/policy/examples/tenant-policy-internal.json" "$run/closed.json"

cleanup() {
  [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  [ -n "${mcpd:-}" ] && kill "$mcpd" 2>/dev/null && wait "$mcpd" 2>/dev/null
  [ -n "${llm:-}" ] && kill "$llm" "$other" 2>/dev/null
  "$build/daemon/sluice-agent" --config "$cfg" --uninstall
  rm -rf "$run"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ip link set lo up

"$probe" listen 11434 60 >/dev/null &   # a stand-in for an on-prem LLM
llm=$!
"$probe" listen 8443 60 >/dev/null &    # some other service the tenant must not reach
other=$!
start_agent() {
  "$build/daemon/sluice-agent" --config "$cfg" 2>>"$run/agent.log" &
  agent=$!
  for _ in $(seq 200); do [ -S "$run/run/agent.sock" ] && "$ctl" agent --socket "$run/run/agent.sock" status >/dev/null 2>&1 && break; sleep 0.05; done
}
start_agent

# sluice-mcpd in the same namespace, pushing policies to that agent.
"$build/mcpd/data/sluice-demo-data" --out "$run/bank.db" --customers 50 --transactions 100 >/dev/null
cat >"$run/mcpd.toml" <<TOML
[server]
listen_address = "127.0.0.1"
listen_port = 0
[storage]
data_dir = "$run/mcpd"
runtime_dir = "$run/mcpd-run"
admin_uids = [$(id -u)]
journal = false
[agent]
socket = "$run/run/agent.sock"
endpoints_file = "$run/endpoints.json"
retry_ms = 500
allow_loopback = true     # the demo's "LLM" listens on loopback
TOML
"$build/mcpd/server/sluice-mcpd" --config "$run/mcpd.toml" >"$run/mcpd.out" 2>&1 &
mcpd=$!
admin="$run/mcpd-run/mcpd-admin.sock"
for _ in $(seq 100); do grep -q "admin socket" "$run/mcpd.out" 2>/dev/null && break; sleep 0.1; done
"$ctl" bootstrap --socket "$admin" --tenant demo --user demo-admin --data-source "$run/bank.db" >/dev/null
# One line per answer: what the kernel enforces, as sluice-mcpd reports it.
policy_set() {
  "$ctl" tenant-policy set --socket "$admin" --tenant demo "$1" >"$run/policy.out"
  local rc=$?
  sed -n 's/^  "version": \([0-9]*\),\{0,1\}$/  stored as version \1/p; s/^    "kernel": "\(.*\)",\{0,1\}$/  kernel: \1/p; s/^    "detail": "\(.*\)",\{0,1\}$/  why: \1/p' "$run/policy.out"
  echo "  (sluicectl exit $rc)"
}

step "sluice-mcpd stores the tenant's policy (allow_llm_egress=true) and pushes it to sluice-agent"
policy_set "$run/open.json"
. "$(dirname "$0")/../lib/cgroup2.sh"
cg=$(cgroup2_mount)/sluicedemo/tenants/demo/llm

step "A process in the tenant's llm cgroup"
echo "connect 127.0.0.1:11434 (the configured LLM)  -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 11434)"
echo "connect 127.0.0.1:8443  (anything else)        -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 8443)"
echo "raw socket                                     -> $("$probe" --cgroup "$cg" raw)"

step "Hold a connection to the LLM, then switch allow_llm_egress off (through sluice-mcpd)"
"$probe" --cgroup "$cg" hold 127.0.0.1 11434 >"$run/hold.out" &
hold=$!
for _ in $(seq 200); do grep -q connected "$run/hold.out" && break; sleep 0.02; done
echo "held connection: $(head -1 "$run/hold.out")"
policy_set "$run/closed.json"
wait "$hold"
echo "held connection: $(tail -1 "$run/hold.out")   (cut by the kernel at once, not left to hang)"
echo "new connect 127.0.0.1:11434 -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 11434)"

step "sluice-agent killed: a change is stored but reported pending, and the kernel keeps the last one"
kill -9 "$agent"; wait "$agent" 2>/dev/null; agent=
policy_set "$run/open.json"
echo "connect 127.0.0.1:11434 -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 11434)   (still the enforced version)"
start_agent
for _ in $(seq 50); do
  "$ctl" tenant-policy show --socket "$admin" --tenant demo >"$run/show.out" 2>&1
  grep -q '"kernel": "enforced"' "$run/show.out" && break
  sleep 0.2
done
echo "agent back: $(sed -n 's/^    "kernel": "\(.*\)",\{0,1\}$/kernel \1/p' "$run/show.out") (the pending version arrived by itself)"
echo "connect 127.0.0.1:11434 -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 11434)"

step "What the kernel refused (sluicectl agent events)"
"$ctl" agent --socket "$run/run/agent.sock" events --max 5
