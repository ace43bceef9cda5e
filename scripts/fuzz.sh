#!/usr/bin/env bash
# Runs every cargo-fuzz target to FUZZ_RUNS executions (default ten
# million) on its corpus, then prints one line per target: executions,
# seconds, corpus files and bytes. A crash stops the run with the
# reproducer in fuzz/artifacts/<target>/ (make it a regression test).
set -euo pipefail
runs=${FUZZ_RUNS:-10000000}
cd "$(dirname "$0")/../fuzz"
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
report=()
for t in $targets; do
  start=$(date +%s)
  log=$(mktemp)
  if ! cargo +nightly fuzz run -O "$t" -- -runs="$runs" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $t failed; reproducer in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  secs=$(( $(date +%s) - start ))
  execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1)
  files=$(find "corpus/$t" -type f | wc -l)
  bytes=$(du -sb "corpus/$t" | cut -f1)
  report+=("| \`$t\` | $execs | $secs | $files | $bytes |")
  rm -f "$log"
done
echo "| target | executions | seconds | corpus files | corpus bytes |"
echo "|---|---|---|---|---|"
printf '%s\n' "${report[@]}"
