#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs what is missing, builds with -j2, runs ctest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
kv_ensure_deps
kv_ensure_packages chromium  # the viewer's browser test (test/browser/run.sh adds npm packages)
kv_build
cd "$KV_BUILD"
ctest --output-on-failure --timeout 900
