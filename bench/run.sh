#!/usr/bin/env bash
# run.sh BUILD_DIR: every benchmark; each prints its own ratios.
set -euo pipefail
build=$1
echo "== policy: strict validation + compilation vs plain JSON parse"
"$build/bench/policy_bench"
