#!/usr/bin/env bash
# Runs fuzz targets one after the other for SECONDS each and prints one Markdown table row per
# target (target, build, seconds, executions, exec/s, crashes), the form fuzz/README.md records.
#
#   fuzz/run.sh SECONDS [--asan] [TARGET...]      (default: every target, without a sanitizer)
#
# New inputs go to a scratch corpus (SOTTO_FUZZ_SCRATCH, default /tmp/sotto-corpus/<target>), the
# committed seeds in fuzz/corpus/<target> are read only. A crash stops that target, leaves its input
# in fuzz/artifacts/<target>/ and makes the script exit non-zero after the remaining targets ran.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [--asan] [TARGET...]}
shift
sanitizer=(-s none --target-dir target/nosan)
build=none
if [[ ${1:-} == --asan ]]; then
  sanitizer=()
  build=ASan
  shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
scratch=${SOTTO_FUZZ_SCRATCH:-/tmp/sotto-corpus}
logs=${SOTTO_FUZZ_LOGS:-/tmp/sotto-fuzz-logs}
mkdir -p "$logs"
# Build once before the clock starts.
cargo +nightly fuzz build "${sanitizer[@]}" || exit 1
commas() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }
failed=0
echo "| target | build | seconds | executions | exec/s | crashes |"
echo "|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$logs/$t.log"
  cargo +nightly fuzz run "${sanitizer[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -n 1)
  took=$(grep -oP 'Done [0-9]+ runs in \K[0-9]+' "$log" | tail -n 1)
  crashes=0
  if [[ $rc -ne 0 ]]; then
    crashes=1
    failed=1
    took=${took:-?}
    echo "fuzz target $t failed (exit $rc); log: $log" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 5 >&2
  fi
  execs=${execs:-0}
  took=${took:-$seconds}
  rate=$(( took > 0 ? execs / took : execs ))
  printf '| `%s` | %s | %s | %s | %s | %s |\n' "$t" "$build" "$took" \
    "$(commas "$execs")" "$(commas "$rate")" "$crashes"
done
exit $failed
