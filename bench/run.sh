#!/usr/bin/env bash
# run.sh BUILD_DIR: every benchmark; each prints its own ratios against a
# baseline measured in the same run.
set -euo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
echo "== machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
echo "== policy: strict validation + compilation vs plain JSON parse"
"$build/bench/policy_bench"
echo "== agent (root, private network namespace)"
"$here/../tests/kernel/run-in-netns.sh" "$build/bench/agent_bench"
echo "== sluice-mcpd: tools/call vs MCP Toolbox, DBHub and an nginx TLS ceiling (root, private network namespace)"
"$here/mcpd/run.sh" "$build"
