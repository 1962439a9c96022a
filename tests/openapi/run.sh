#!/usr/bin/env bash
# make test-openapi: starts gmserve on a loopback port (once without API
# keys, once with), fetches GET /openapi.json and has it checked by two
# OpenAPI 3.1 validators from npm (validate.mjs): @apidevtools/swagger-parser
# (the document against the OpenAPI 3.1 schema, $refs resolved) and
# Redocly's lint with its strictest rules (redocly.yaml). npm installs them
# into tests/openapi/node_modules when missing; nothing is fetched after that.
set -euo pipefail
build=${1:-build}
here=tests/openapi
out="$build/openapi"
mkdir -p "$out"
command -v node >/dev/null || { echo "test-openapi: needs node and npm (scripts/install-deps.sh --browser)"; exit 1; }
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a == 20 && b >= 19) ? 0 : 1)' ||
    { echo "test-openapi: needs Node.js 20.19 or later, which @redocly/cli 2 runs on (found $(node --version))"; exit 1; }
if [ ! -d "$here/node_modules/@apidevtools/swagger-parser" ] || [ ! -d "$here/node_modules/@redocly/cli" ]; then
    echo "test-openapi: npm install @apidevtools/swagger-parser @redocly/cli"
    (cd "$here" && npm install --no-audit --no-fund --loglevel=error)
fi
echo '{}' > "$out/empty.json"
pid=
trap '[ -n "$pid" ] && kill -TERM $pid 2>/dev/null; wait 2>/dev/null || true' EXIT
for keys in no-key with-key; do
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    extra=()
    [ "$keys" = with-key ] && extra=(--api-key test-openapi-key)
    "$build/gmserve" --config "$out/empty.json" --listen "127.0.0.1:$port" \
        --model nade=models/nade.safetensors --model vae=models/vae.safetensors \
        --model gan=models/gan.safetensors "${extra[@]}" 2> "$out/daemon-$keys.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    auth=()
    [ "$keys" = with-key ] && auth=(-H 'Authorization: Bearer test-openapi-key')
    curl -sf "${auth[@]}" "http://127.0.0.1:$port/openapi.json" -o "$out/openapi-$keys.json"
    kill -TERM $pid
    wait $pid
    pid=
    echo "== /openapi.json ($keys)"
    node "$here/validate.mjs" "$out/openapi-$keys.json"
done
