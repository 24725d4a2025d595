#!/usr/bin/env bash
# kernel-demo.sh BUILD_DIR: runs inside a private network namespace (see
# demo.sh). A demo tenant's LLM endpoint on loopback; the kernel allows it,
# refuses everything else, and cuts a live connection when
# allow_llm_egress is switched off.
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
"$build/daemon/sluice-agent" --config "$cfg" 2>"$run/agent.log" &
agent=$!
for _ in $(seq 200); do [ -S "$run/run/agent.sock" ] && "$ctl" agent --socket "$run/run/agent.sock" status >/dev/null 2>&1 && break; sleep 0.05; done

step "Apply the tenant 'demo' with allow_llm_egress=true (both kernel layers)"
"$ctl" agent --socket "$run/run/agent.sock" apply --tenant demo --version 1 \
  --policy "$run/open.json" --endpoints "$run/endpoints.json" --allow-loopback
cg=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo)/sluicedemo/tenants/demo/llm

step "A process in the tenant's llm cgroup"
echo "connect 127.0.0.1:11434 (the configured LLM)  -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 11434)"
echo "connect 127.0.0.1:8443  (anything else)        -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 8443)"
echo "raw socket                                     -> $("$probe" --cgroup "$cg" raw)"

step "Hold a connection to the LLM, then switch allow_llm_egress off"
"$probe" --cgroup "$cg" hold 127.0.0.1 11434 >"$run/hold.out" &
hold=$!
for _ in $(seq 200); do grep -q connected "$run/hold.out" && break; sleep 0.02; done
echo "held connection: $(head -1 "$run/hold.out")"
"$ctl" agent --socket "$run/run/agent.sock" apply --tenant demo --version 2 \
  --policy "$run/closed.json" --endpoints "$run/endpoints.json" --allow-loopback
wait "$hold"
echo "held connection: $(tail -1 "$run/hold.out")   (cut by the kernel at once, not left to hang)"
echo "new connect 127.0.0.1:11434 -> $("$probe" --cgroup "$cg" tcp 127.0.0.1 11434)"

step "What the kernel refused (sluicectl agent events)"
"$ctl" agent --socket "$run/run/agent.sock" events --max 5
