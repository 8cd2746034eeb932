#!/usr/bin/env bash
# Runs every libFuzzer target for FUZZ_SECONDS each (default 10) from its seed corpus
# (tests/fuzz/corpus/<target>, never modified: new inputs go to BUILD/corpus/<target>) and the inputs
# that once crashed it (tests/fuzz/regressions/<target>), with its dictionary. A crash, a sanitizer report or a leak stops with the reproducer in BUILD/crashes/.
#   scripts/fuzz.sh [BUILD_DIR]        (BUILD_DIR defaults to build-fuzz)
#   FUZZ_TARGETS="image json" scripts/fuzz.sh    (some targets only)
#   FUZZ_SECONDS=3600 FUZZ_RUNS=10000000 FUZZ_SEED=0 scripts/fuzz.sh   (a long run: 1 h or 10 M
#     executions each, whichever comes first; the corpus in BUILD/corpus grows from run to run)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-10}
# A fixed seed by default, so that a short run (CI) tries the same inputs every time and a slower
# machine tries a prefix of them; FUZZ_SEED=0 draws a random seed (long runs).
SEED=${FUZZ_SEED:-1}
RUNS=()
[ -n "${FUZZ_RUNS:-}" ] && RUNS=(-runs="$FUZZ_RUNS")
mkdir -p "$BUILD/crashes"
status=0
printf '%-12s %8s %10s %8s %8s  %s\n' target seconds execs 'cpu s' corpus result
for target in ${FUZZ_TARGETS:-safetensors checkpoint image tokenizer json method_files requests}; do
  bin="$BUILD/fuzz_$target"
  [ -x "$bin" ] || { echo "fuzz.sh: $bin is missing (make fuzz builds it)" >&2; exit 2; }
  work="$BUILD/corpus/$target"
  mkdir -p "$work"
  seeds=("tests/fuzz/corpus/$target")
  [ -d "tests/fuzz/regressions/$target" ] && seeds+=("tests/fuzz/regressions/$target")
  dict=()
  [ -f "tests/fuzz/dict/$target.dict" ] && dict=(-dict="tests/fuzz/dict/$target.dict")
  log="$BUILD/fuzz_$target.log"
  # One thread for LibTorch: the fuzzers run on shared 2-core machines.
  cpu="$BUILD/fuzz_$target.cpu"
  if OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
      /usr/bin/time -f '%U %S' -o "$cpu" \
      "$bin" -seed="$SEED" -max_total_time="$SECONDS_EACH" "${RUNS[@]}" -rss_limit_mb=4096 -timeout=30 -max_len=1048576 \
      -artifact_prefix="$BUILD/crashes/${target}-" "${dict[@]}" "$work" "${seeds[@]}" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#')
  cpu_s=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { printf "%.0f", $1 + $2 }' "$cpu" 2>/dev/null || true)
  printf '%-12s %8s %10s %8s %8s  %s\n' "$target" "$SECONDS_EACH" "${execs:-?}" "${cpu_s:-?}" "$(ls "$work" | wc -l)" "$result"
done
exit $status
