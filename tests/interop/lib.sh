# Sourced by the interop and conformance scripts. Needs: $build, $work,
# $ctl, an array pids (every started process is appended), and
# $work/bank.db.

# start_mcpd NAME SERVER_TOML TAIL_TOML: a sluice-mcpd in $work/NAME on a
# free port, with extra [server] keys and extra sections; sets url, sock and
# key_all (a bootstrapped super-admin key).
start_mcpd() {
  local dir="$work/$1"
  mkdir -p "$dir"
  cat > "$dir/mcpd.toml" <<TOML
[server]
listen_address = "127.0.0.1"
listen_port = 0
$2
[storage]
data_dir = "$dir/data"
runtime_dir = "$dir/run"
admin_uids = [$(id -u)]
journal = false
$3
TOML
  "$build/mcpd/server/sluice-mcpd" --config "$dir/mcpd.toml" >"$dir/mcpd.out" 2>"$dir/mcpd.err" &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q "admin socket" "$dir/mcpd.out" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/mcpd.err" >&2; exit 1; }
    sleep 0.1
  done
  url=$(sed -n 's/^sluice-mcpd: listening on \(https:[^ ]*\)$/\1/p' "$dir/mcpd.out")
  [ -n "$url" ] || { echo "mcpd_interop: no URL in mcpd's output" >&2; cat "$dir/mcpd.out" "$dir/mcpd.err" >&2; exit 1; }
  sock="$dir/run/mcpd-admin.sock"
  key_all=$("$ctl" bootstrap --socket "$sock" --tenant acme --user alice --data-source "$work/bank.db" |
    sed -n 's/.*"token": "\(slk_[^"]*\)".*/\1/p')
  [ -n "$key_all" ] || { echo "mcpd_interop: bootstrap failed" >&2; exit 1; }
}

