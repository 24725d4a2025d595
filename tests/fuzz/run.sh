#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS: runs every fuzz target for SECONDS each (0:
# until interrupted) over a working copy of the committed seed corpus.
# Exits non-zero on any crash, leak, timeout or sanitizer report.
set -euo pipefail
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
status=0
for target in policy_fuzz; do
  work="$here/corpus-work/$target"
  mkdir -p "$work" "$build/artifacts/$target"
  args=(-max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        "-artifact_prefix=$build/artifacts/$target/")
  [ "$seconds" -gt 0 ] && args+=("-max_total_time=$seconds")
  echo "fuzz: $target for ${seconds}s (0 = until interrupted)"
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
       "$build/tests/fuzz/$target" "${args[@]}" "$work" "$here/corpus/${target%_fuzz}" \
       >"$build/$target.log" 2>&1; then
    echo "fuzz: $target FAILED; last lines of $build/$target.log:"
    tail -n 40 "$build/$target.log"
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$build/$target.log" | sed 's/^/fuzz:   /'
  fi
done
exit $status
