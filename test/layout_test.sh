#!/usr/bin/env bash
# The README's Layout section names every folder of the tree it describes: each folder under
# src/ (and src/sync/viewer), test/, bench/ and scripts/ appears there, and every src/ folder it
# names exists.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
layout="$(sed -n '/^## Layout/,/^Each process/p' "$root/README.md")"
[ -n "$layout" ] || { echo "README.md has no Layout section"; exit 1; }
fail=0
for d in "$root"/src/*/ "$root"/test/ "$root"/bench/ "$root"/scripts/; do
  name="${d#"$root"/}"
  grep -qF "$name" <<<"$layout" || { echo "README Layout does not mention $name"; fail=1; }
done
for d in "$root"/test/*/; do
  name="$(basename "$d")"
  case "$name" in node_modules | artifacts) continue ;; esac
  grep -qE "(^|[ (,])$name/" <<<"$layout" || { echo "README Layout does not mention test/$name/"; fail=1; }
done
while read -r named; do
  [ -d "$root/$named" ] || { echo "README Layout names $named, which does not exist"; fail=1; }
done < <(grep -oE '^src/[a-z_]+/' <<<"$layout")
[ "$fail" = 0 ] && echo "README Layout matches the tree"
exit "$fail"
