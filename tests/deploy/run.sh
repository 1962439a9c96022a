#!/usr/bin/env bash
# make test-deploy: the image and the compose file, run for real with podman
# (notes/containers.md). Sets podman up when needed, makes the local
# debian:bookworm-slim stand-in, builds docker/Dockerfile unchanged, then with
# docker/compose.yaml: ready within 10 s, non-root, a PNG from /sample and a
# number from /logp, healthy, and `compose stop` under load answering every
# accepted request with exit code 0. `compose down` runs on every exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "test-deploy: FAIL: $*"; exit 1; }
export GMSERVE_PORT=${GMSERVE_PORT:-18480}
compose=(podman-compose -f docker/compose.yaml)
base=http://127.0.0.1:$GMSERVE_PORT
out=build/deploy
mkdir -p "$out"

# podman, as the note says: runc, no default ulimits
missing=()
for p in podman podman-compose runc debootstrap; do command -v $p >/dev/null || missing+=($p); done
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman podman-compose runc debootstrap
fi
if ! grep -q 'runtime = "runc"' /etc/containers/containers.conf 2>/dev/null; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf
fi
bash scripts/make-base-image.sh

cleanup() {
    "${compose[@]}" down > "$out/down.log" 2>&1 || true
    podman network rm -f docker_default > /dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

echo "test-deploy: building the image ..."
t0=$(date +%s)
podman build -q --format docker -f docker/Dockerfile -t localhost/gmserve:latest . > "$out/build.log" 2>&1 ||
    { tail -20 "$out/build.log"; fail "podman build"; }
size=$(podman image inspect --format '{{.Size}}' localhost/gmserve:latest)
echo "test-deploy: image built in $(( $(date +%s) - t0 )) s; runtime image $(( size / 1000000 )) MB"
[ "$size" -le 200000000 ] || fail "runtime image over 200 MB"

start=$(date +%s%N)
"${compose[@]}" up -d > "$out/up.log" 2>&1 || { cat "$out/up.log"; fail "compose up"; }
ready=""
for _ in $(seq 100); do
    if curl -sf "$base/readyz" > /dev/null; then ready=$(( ($(date +%s%N) - start) / 1000000 )); break; fi
    sleep 0.1
done
[ -n "$ready" ] || fail "/readyz not 200 within 10 s"
echo "test-deploy: compose up to ready in $ready ms"
container=$(podman ps --format '{{.Names}}' | grep gmserve | head -1)
user=$(podman top "$container" user | tail -1 | tr -d ' ')
[ "$user" != root ] || fail "gmserve runs as root"
echo "test-deploy: runs as $user"
curl -sf "$base/sample?model=gan&n=16" -o "$out/grid.png"
[ "$(head -c 8 "$out/grid.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "/sample is not a PNG"
curl -sf "$base/sample?model=nade&seed=1" -o "$out/nade.png"
logp=$(curl -sf -X POST "$base/logp?model=nade" -H 'Content-Type: image/png' --data-binary @"$out/nade.png")
echo "$logp" | grep -Eq '"logp":-[0-9.]+' || fail "/logp gave $logp"
podman healthcheck run "$container" > /dev/null || fail "healthcheck"
[ "$(podman inspect --format '{{.State.Health.Status}}' "$container")" = healthy ] || fail "not healthy"
echo "test-deploy: PNG from /sample, log p from /logp, container healthy"

# compose stop under load: 40 slow requests in flight, then SIGTERM
for i in $(seq 40); do
    curl -s -o /dev/null -w '%{http_code}\n' -X POST "$base/v1/models/vae/logp?k=5000&seed=$i" \
        -H 'Content-Type: image/png' --data-binary @"$out/nade.png" &
done > "$out/stop-load.txt"
sleep 0.3
"${compose[@]}" stop > "$out/stop.log" 2>&1
wait
codes=$(sort "$out/stop-load.txt" | uniq -c | tr -s ' ' | tr '\n' ';')
echo "test-deploy: replies during compose stop: $codes"
grep -Evq '^(200|503)$' "$out/stop-load.txt" && fail "a request failed during the drain ($codes)"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$exit_code" = 0 ] || fail "gmserve exited $exit_code"
echo "test-deploy: stopped with exit code 0"
echo "test-deploy: all checks passed"
