#!/usr/bin/env bash
# Installs the browsing and browser-test tools into project-local folders (idempotent):
#   .tools/node/node_modules/  npm omniboard@2.16.1 (the run browser) + playwright-core (tests)
#   /usr/bin/chromium          Debian chromium, only when run as root with apt (CI images)
# Omniboard is what `python run.py board` starts; chromium + playwright-core drive the
# real-browser test (tests/test_tracking_browser.py skips when they are missing).
set -euo pipefail
cd "$(dirname "$0")/.."
OMNIBOARD_VERSION=2.16.1
PLAYWRIGHT_VERSION=1.57.0
TOOLS=.tools/node
mkdir -p "$TOOLS"
if ! command -v npm >/dev/null; then
  echo "setup_tools: npm not found; install Node.js >= 18 (apt-get install -y nodejs npm)" >&2
  exit 1
fi
if [ ! -x "$TOOLS/node_modules/.bin/omniboard" ] || [ ! -d "$TOOLS/node_modules/playwright-core" ]; then
  [ -f "$TOOLS/package.json" ] || echo '{"name": "lvmae-tools", "private": true}' > "$TOOLS/package.json"
  npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error \
    "omniboard@$OMNIBOARD_VERSION" "playwright-core@$PLAYWRIGHT_VERSION"
fi
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup_tools: chromium not found and cannot apt-get it here; the browser test will skip" >&2
  fi
fi
echo "tracking tools ready: $(pwd)/$TOOLS (omniboard $OMNIBOARD_VERSION), chromium: $(command -v chromium || echo missing)"
