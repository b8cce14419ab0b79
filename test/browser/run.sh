#!/usr/bin/env bash
# Runs the viewer's real-browser test (viewer.test.mjs) in Debian's chromium via playwright-core.
#   test/browser/run.sh --bin build [--artifacts DIR] [--timeout SECONDS]
# Installs what is missing: the chromium package (and nodejs/npm when there is no node), and the
# pinned npm dependencies (npm ci). Never downloads a Playwright browser.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../scripts/lib.sh
source "$here/../../scripts/lib.sh"

kv_ensure_packages chromium
if [ ! -x /usr/bin/node ] || ! command -v npm >/dev/null 2>&1; then
  kv_ensure_packages nodejs npm
fi

# Reinstall when node_modules is missing or older than the lock file.
stamp="$here/node_modules/.package-lock.json"
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
  echo "installing the test's npm dependencies (npm ci)"
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# Stay in the caller's directory, so that relative --bin / --artifacts paths mean what they say.
exec node "$here/viewer.test.mjs" "$@"
