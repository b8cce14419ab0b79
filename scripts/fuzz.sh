#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz/ into build-fuzz/ and runs them.
#
#   scripts/fuzz.sh [--seconds N] [--target NAME]   fuzz each target (or NAME) N seconds (300)
#   scripts/fuzz.sh --ci                            what CI runs: replay, then 10 s per target
#
# Each target first replays every input under test/fuzz/regressions/<target>/ and
# test/fuzz/corpus/<target>/ (one run each: a crash there is a regression), then fuzzes a copy of
# that corpus in build-fuzz/corpus/<target>/, so the committed corpus never grows (long runs keep
# and reuse their copy; --ci starts from a fresh one). A crash is saved under
# build-fuzz/crashes/<target>/ and makes the script exit non-zero; after fixing the bug, move the
# input to test/fuzz/regressions/<target>/. Logs: build-fuzz/logs/<target>.log.
#
# Environment: KV_FUZZ_BUILD (default build-fuzz), KV_FUZZ_JOBS (build parallelism, default 2),
# KV_FUZZ_SRC (a src/ directory to fuzz instead of this checkout's, e.g. a patched copy).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

FUZZ_DIR="$KV_ROOT/test/fuzz"
OUT="${KV_FUZZ_BUILD:-$KV_ROOT/build-fuzz}"
TARGETS=(fuzz_frame fuzz_notification fuzz_records fuzz_commands fuzz_client)

seconds=300
ci=0
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --target) only="$2"; shift 2 ;;
    --target=*) only="${1#*=}"; shift ;;
    --ci) ci=1; seconds=10; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$only" ]; then
  [ "${only#fuzz_}" = "$only" ] && only="fuzz_$only"  # --target frame works too
  found=0
  for t in "${TARGETS[@]}"; do [ "$t" = "$only" ] && found=1; done
  if [ "$found" -eq 0 ]; then
    echo "fuzz.sh: no target '$only'; targets: ${TARGETS[*]}" >&2
    exit 2
  fi
  TARGETS=("$only")
fi
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds takes a whole number" >&2; exit 2 ;; esac

start=$SECONDS
kv_ensure_packages cmake make clang-14 libclang-rt-14-dev libboost1.81-dev

# ---- Build --------------------------------------------------------------------------------------
cmake_args=(-S "$FUZZ_DIR" -B "$OUT" -DCMAKE_CXX_COMPILER=clang++-14)
[ -n "${KV_FUZZ_SRC:-}" ] && cmake_args+=(-DKV_SOURCE_DIR="$(cd "$KV_FUZZ_SRC" && pwd)")
cmake "${cmake_args[@]}" >/dev/null
echo "building ${TARGETS[*]} in $OUT"
cmake --build "$OUT" -j"${KV_FUZZ_JOBS:-2}" --target "${TARGETS[@]}" >"$OUT/build.log" 2>&1 || {
  cat "$OUT/build.log"
  echo "fuzz.sh: build failed" >&2
  exit 1
}

mkdir -p "$OUT/logs" "$OUT/corpus" "$OUT/crashes"
opts=(-max_len=65536 -timeout=10 -rss_limit_mb=2048)

# The failed check or sanitizer report, and the stack without libFuzzer's and libc's frames.
show_failure() {
  grep -E 'property violated|ERROR: |SUMMARY: |^    #[0-9]' "$1" |
    grep -vE 'fuzzer::|__sanitizer_print_stack_trace|libc\.so|/nptl/|/stdlib/|/csu/| in _start | in main ' |
    head -25 | sed 's/^/   /'
}

# ---- Run ----------------------------------------------------------------------------------------
failed=()
summary=()
for t in "${TARGETS[@]}"; do
  bin="$OUT/$t"
  log="$OUT/logs/$t.log"
  crashes="$OUT/crashes/$t"
  work="$OUT/corpus/$t"
  mkdir -p "$crashes"
  : >"$log"

  # 1. Replay: every regression and seed input, once each.
  mapfile -t inputs < <(find "$FUZZ_DIR/regressions/$t" "$FUZZ_DIR/corpus/$t" -type f \
                          ! -name '.*' ! -name '*.md' 2>/dev/null | sort)
  replay="no inputs"
  if [ ${#inputs[@]} -gt 0 ]; then
    echo "== $t: replaying ${#inputs[@]} inputs (regressions, corpus)"
    if ! "$bin" "${opts[@]}" -artifact_prefix="$crashes/" "${inputs[@]}" >>"$log" 2>&1; then
      bad="$(grep -o 'Running: .*' "$log" | tail -1 | sed 's/^Running: //')"
      echo "!! $t: replayed input fails: $bad"
      show_failure "$log"
      failed+=("$t")
      summary+=("$(printf '%-18s %10s %8s %8s  %s' "$t" - - - "REPLAY FAILED: $bad")")
      continue
    fi
    replay="${#inputs[@]} inputs ok"
  fi

  # 2. Fuzz a copy of the corpus (and the regressions: they are good seeds).
  [ "$ci" -eq 1 ] && rm -rf "$work"
  mkdir -p "$work"
  for d in "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/regressions/$t"; do
    [ -d "$d" ] && find "$d" -type f ! -name '.*' ! -name '*.md' -exec cp -n -t "$work" {} +
  done
  echo "== $t: fuzzing ${seconds}s ($replay)"
  rc=0
  "$bin" "${opts[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$work" >>"$log" 2>&1 || rc=$?

  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)"
  [ -z "$runs" ] && runs="$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)"
  cov="$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)"
  ft="$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || true)"
  if [ "$rc" -ne 0 ]; then
    artifact="$(grep -o 'Test unit written to .*' "$log" | tail -1 | sed 's/^Test unit written to //')"
    echo "!! $t: crash (exit $rc), input saved as ${artifact:-?}"
    show_failure "$log"
    failed+=("$t")
    result="CRASH: ${artifact:-see $log}"
  else
    result="ok"
  fi
  summary+=("$(printf '%-18s %10s %8s %8s  %s' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$result")")
done

echo
printf '%-18s %10s %8s %8s  %s\n' target runs cov ft result
for line in "${summary[@]}"; do echo "$line"; done
echo "total $((SECONDS - start))s; logs in $OUT/logs/"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (crash inputs under $OUT/crashes/)" >&2
  exit 1
fi
