#!/usr/bin/env bash
# Drives the explorer in headless Chromium: loads the page, moves the p slider, steps and runs the
# training, reads the DOM and checks it, and saves two screenshots:
#   docs/img/explorer_start.png    (p = 0.25 after one step: the mask, tape, trace and graph)
#   docs/img/explorer_trained.png  (p = 0.5 after 150 steps: the curves with dropout on and off)
# Installs Chromium and its WebDriver from Debian when they are absent (needs root and apt).
# Usage: scripts/browser_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "browser_test: installing chromium and chromium-driver from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

cargo build --release --example explorer
out=$(mktemp)
target/release/examples/explorer --port 0 >"$out" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 50); do
  grep -q '^explorer: ' "$out" && break
  sleep 0.1
done
url=$(head -n 1 "$out" | sed -n 's/^explorer: //p')
[ -n "$url" ] || { echo "browser_test: the explorer did not start:" >&2; cat "$out" >&2; exit 1; }
echo "browser_test: explorer at $url" >&2
python3 scripts/browser_driver.py "$url" docs/img
