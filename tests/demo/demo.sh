#!/usr/bin/env bash
# demo.sh BUILD_DIR: the main job on the embedded defaults, as far as it
# exists today: validate and explain the sample tenant policies, show the
# errors an invalid one gets, and what flipping allow_llm_egress changes.
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

cat <<'MSG'

Next: sluice-mcpd (MCP over HTTPS) extends this demo as it lands; see README.md.
MSG
