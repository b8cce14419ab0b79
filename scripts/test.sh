#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs what is missing, builds with -j2, runs ctest.
#
#   scripts/test.sh              the suite (build/)
#   scripts/test.sh --sanitize   the suite under AddressSanitizer + UBSan (build-asan/), without
#                                the benchmark smoke test and the browser test (no C++ of ours)
#   scripts/test.sh --tsan       the store tests, where the node's two threads (I/O and committer)
#                                meet, under ThreadSanitizer (build-tsan/)
#   scripts/test.sh --tsan-cluster  the store tests and the whole-cluster tests (test_cluster:
#                                kvnode, kvsync and kvcli built with TSan) under ThreadSanitizer;
#                                not in --all, whose time it would push past CI's budget.
#                                test_durability's deadlines are too tight for TSan's slowdown.
#   scripts/test.sh --all        all of the above, then a short run of every fuzzer (what CI runs)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mode=${1:-plain}
case "$mode" in
  plain|--sanitize|--tsan|--tsan-cluster|--all) ;;
  *) echo "usage: scripts/test.sh [--sanitize|--tsan|--tsan-cluster|--all]" >&2; exit 2 ;;
esac

kv_ensure_deps
if [ "$mode" = --all ]; then
  bash "$KV_ROOT/scripts/test.sh"
  bash "$KV_ROOT/scripts/test.sh" --sanitize
  bash "$KV_ROOT/scripts/test.sh" --tsan
  bash "$KV_ROOT/scripts/fuzz.sh" --ci
  exit 0
fi

if [ "$mode" = --tsan ] || [ "$mode" = --tsan-cluster ]; then
  export KV_BUILD="$KV_ROOT/build-tsan"
  cmake -S "$KV_ROOT" -B "$KV_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_SANITIZE_THREAD=ON \
    >/dev/null
  targets=(test_store)
  tests='^store$'
  if [ "$mode" = --tsan-cluster ]; then
    targets+=(kvnode kvsync kvcli test_cluster)
    tests='^(store|cluster)$'
  fi
  # GCC warns that TSan does not model atomic_thread_fence (inside Asio; the log keeps them): our
  # own threads share state through a mutex and a condition variable, which TSan does model.
  cmake --build "$KV_BUILD" -j2 --target "${targets[@]}" > "$KV_BUILD/tsan-build.log" 2>&1 ||
    { tail -40 "$KV_BUILD/tsan-build.log"; exit 1; }
  cd "$KV_BUILD"
  # Child processes (kvnode, kvsync, kvcli) inherit TSAN_OPTIONS: a race in any of them stops it
  # with a report, and the test that needed it fails.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$KV_ROOT/test/tsan.supp \
    ctest --output-on-failure --timeout 900 -R "$tests"
  exit 0
fi

if [ "$mode" = --sanitize ]; then
  export KV_BUILD="$KV_ROOT/build-asan" KV_CMAKE_ARGS="-DKV_SANITIZE=ON"
  kv_build
  cd "$KV_BUILD"
  # Leaks are reported at exit; UBSan stops at the first finding.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure --timeout 900 -E 'bench_smoke|viewer_browser'
  exit 0
fi

kv_ensure_packages chromium  # the viewer's browser test (test/browser/run.sh adds npm packages)
kv_build
cd "$KV_BUILD"
ctest --output-on-failure --timeout 900
