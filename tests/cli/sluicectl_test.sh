#!/usr/bin/env bash
# sluicectl_test.sh SLUICECTL EXAMPLES_DIR: the policy commands from the
# outside, as an operator or a script sees them: output and exit codes.
set -u
ctl=$1
here=$2
examples="$here/../../policy/examples"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

# expect NAME WANT_RC PATTERN_IN_OUTPUT -- CMD...: runs CMD, checks the exit
# code and that stdout+stderr match the extended regex PATTERN.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $name: exit $rc, want $want"; echo "$out" | head -20; failed=$((failed + 1)); return
  fi
  if [ -n "$pattern" ] && ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "FAIL $name: output lacks /$pattern/"; echo "$out" | head -20; failed=$((failed + 1)); return
  fi
  passed=$((passed + 1))
}

cat >"$tmp/messy.json" <<'JSON'
{"egress_allowlist": ["B.example.com", "a.example.com", "b.example.com.", "::ffff:10.0.0.1", "10.0.0.1"],
 "discovery_samples": true, "allow_prospecting": false, "allow_llm_egress": true}
JSON
cat >"$tmp/bad.json" <<'JSON'
{"allow_llm_egress": "yes", "allow_prospecting": false,
 "egress_allowlist": ["169.254.169.254", "10.0.0.1/8", "*.com", "ok.example.com"], "extra": 1}
JSON
printf '{"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":["127.0.0.1:8080"]}' >"$tmp/loop.json"

expect "validate prints the normalised policy" 0 '"a\.example\.com",' -- "$ctl" policy validate "$tmp/messy.json"
out=$("$ctl" policy validate "$tmp/messy.json")
want='["a.example.com","b.example.com","10.0.0.1"]'
got=$(tr -d ' \n' <<<"$out" | grep -o '"egress_allowlist":\[[^]]*\]' | cut -d: -f2-)
if [ "$got" = "$want" ]; then passed=$((passed + 1)); else echo "FAIL normal form: $got"; failed=$((failed + 1)); fi

expect "validate reads stdin" 0 'allow_llm_egress' -- bash -c "\"$ctl\" policy validate - <\"$examples/tenant-policy.json\""
expect "validate reports a wrong type by path" 2 '^.*: allow_llm_egress: expected true or false' -- "$ctl" policy validate "$tmp/bad.json"
expect "validate reports a missing field" 2 'discovery_samples: required field missing \[missing_field\]' -- "$ctl" policy validate "$tmp/bad.json"
expect "validate reports a denied range" 2 'egress_allowlist\[0\]: .*always-denied' -- "$ctl" policy validate "$tmp/bad.json"
expect "validate reports host bits" 2 'egress_allowlist\[1\]: host bits set' -- "$ctl" policy validate "$tmp/bad.json"
expect "validate reports a broad wildcard" 2 'egress_allowlist\[2\]: wildcard too broad' -- "$ctl" policy validate "$tmp/bad.json"
expect "validate reports an unknown field" 2 'extra: unknown field' -- "$ctl" policy validate "$tmp/bad.json"
n=$("$ctl" policy validate "$tmp/bad.json" 2>&1 >/dev/null | wc -l)
if [ "$n" -eq 6 ]; then passed=$((passed + 1)); else echo "FAIL every error reported: $n lines, want 6"; failed=$((failed + 1)); fi
expect "validate prints nothing on stdout for invalid input" 0 '^$' -- bash -c "\"$ctl\" policy validate \"$tmp/bad.json\" 2>/dev/null; true"
expect "validate of a missing file exits 2" 2 'cannot open' -- "$ctl" policy validate "$tmp/nonexistent.json"
expect "validate of non-JSON exits 2" 2 'invalid JSON' -- bash -c "echo '{nope' | \"$ctl\" policy validate -"
expect "loopback is refused by default" 2 'always-denied range \(loopback\)' -- "$ctl" policy validate "$tmp/loop.json"
expect "loopback is accepted for test set-ups" 0 '127\.0\.0\.1:8080' -- "$ctl" policy validate --allow-loopback "$tmp/loop.json"

expect "explain shows the banner" 0 '^Data egress: EXTERNAL$' -- "$ctl" policy explain "$examples/tenant-policy.json" --endpoints "$examples/endpoints.json"
expect "explain says why an endpoint is blocked" 0 'blocked: allow_prospecting is false' -- "$ctl" policy explain "$examples/tenant-policy.json" --endpoints "$examples/endpoints.json"
expect "explain of an internal-only policy says NONE" 0 '^Data egress: NONE$' -- "$ctl" policy explain "$examples/tenant-policy-internal.json" --endpoints "$examples/endpoints.json"
expect "explain --json carries the egress verdict" 0 '"egresses": false' -- "$ctl" policy explain --json "$examples/tenant-policy-internal.json" --endpoints "$examples/endpoints.json"
expect "explain needs --endpoints" 2 'endpoints' -- "$ctl" policy explain "$examples/tenant-policy.json"
echo '{"endpoints": {"llm": ["api.example.com"]}}' >"$tmp/ep-bad.json"
expect "explain reports endpoint errors by path" 2 'endpoints\.llm\[0\]: an endpoint needs a port' -- "$ctl" policy explain "$examples/tenant-policy.json" --endpoints "$tmp/ep-bad.json"

expect "no subcommand is a usage error" 2 'subcommand' -- "$ctl"
expect "unknown subcommand is a usage error" 2 '' -- "$ctl" frobnicate
expect "tenant create needs a name" 2 'name is required' -- "$ctl" tenant create --data-source /srv/x.db
expect "tenant needs a subcommand" 2 'subcommand' -- "$ctl" tenant
expect "help exits 0" 0 'validate' -- "$ctl" policy --help

echo "sluicectl: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
