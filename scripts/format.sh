#!/usr/bin/env bash
# clang-format (Debian's, version 14, with .clang-format) over every C++ file git tracks.
#   scripts/format.sh           rewrites them in place
#   scripts/format.sh --check   changes nothing; lists the files that differ and exits 1 (CI)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kv_ensure_packages clang-format
cd "$KV_ROOT"
mapfile -t files < <(git ls-files '*.cpp' '*.hpp')
case "${1:-}" in
  "") clang-format -i "${files[@]}" ;;
  --check)
    bad=()
    for f in "${files[@]}"; do
      clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
    done
    if [ ${#bad[@]} -gt 0 ]; then
      echo "not clang-formatted (run scripts/format.sh): ${bad[*]}" >&2
      exit 1
    fi
    echo "clang-format: ${#files[@]} files ok"
    ;;
  *) echo "usage: scripts/format.sh [--check]" >&2; exit 2 ;;
esac
