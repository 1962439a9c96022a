#!/usr/bin/env bash
# make test-browser: starts gmserve on a loopback port with the bundled models,
# two translator fixtures (no translator is bundled yet) and the web page, installs playwright-core (npm) when missing, and runs
# page.test.mjs in headless Debian chromium. Screenshots: BUILD/browser/.
set -euo pipefail
build=${1:-build}
here=tests/browser
out="$build/browser"
mkdir -p "$out"
[ -x /usr/bin/chromium ] || { echo "test-browser: needs chromium (scripts/install-deps.sh --browser)"; exit 1; }
if [ ! -d "$here/node_modules/playwright-core" ]; then
    echo "test-browser: npm install playwright-core"
    (cd "$here" && npm install --no-audit --no-fund --loglevel=error)
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo '{}' > "$out/empty.json"
"$build/gmserve" --config "$out/empty.json" --listen "127.0.0.1:$port" --web-root web \
    --model nade=models/nade.safetensors --model vae=models/vae.safetensors \
    --model gan=models/gan.safetensors --model aae=models/aae.safetensors \
    --model star=tests/fixtures/translator_stargan.safetensors \
    --model cyc=tests/fixtures/translator_half.safetensors \
    --model infogan=models/infogan.safetensors 2> "$out/daemon.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
GMSERVE_URL="http://127.0.0.1:$port" SHOTS="$out" node "$here/page.test.mjs"
