#!/usr/bin/env bash
# make test-deploy: the image and the compose file, run for real with podman
# (no Docker engine or registry needed). Sets podman up when needed, makes the local
# debian:bookworm-slim stand-in, builds docker/Dockerfile unchanged, then with
# docker/compose.yaml: ready within 10 s, non-root, a PNG from /sample and a
# number from /logp, healthy, and `compose stop` under load answering every
# accepted request with exit code 0; the own-model recipe (a host folder
# mounted at /models, GMSERVE_MODELS) serves a copy of a bundled model under
# another name. Then docker/compose.scale.yaml: requests
# spread over the three replicas, a replica killed (SIGKILL) under 20 s of
# load costs no failed request, and once started again it serves its share.
# `compose down` runs for both files on every exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "test-deploy: FAIL: $*"; exit 1; }
export GMSERVE_PORT=${GMSERVE_PORT:-18480}
compose=(podman-compose -f docker/compose.yaml)
scale=(podman-compose -f docker/compose.scale.yaml)
base=http://127.0.0.1:$GMSERVE_PORT
out=build/deploy
mkdir -p "$out"

# podman with runc, no default ulimits, and netavark networking: its
# aardvark-dns is what lets nginx reach the replicas by service name (podman
# falls back to CNI without a DNS plugin when these recommends are missing);
# netavark builds the bridge network with iptables
missing=()
for p in podman podman-compose runc debootstrap wrk netavark aardvark-dns iptables; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! grep -q 'network_backend = "netavark"' /etc/containers/containers.conf 2>/dev/null; then
    mkdir -p /etc/containers
    podman network rm -f docker_default > /dev/null 2>&1 || true # made by the old backend
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n[network]\nnetwork_backend = "netavark"\n' \
        > /etc/containers/containers.conf
fi
bash scripts/make-base-image.sh

cleanup() {
    "${compose[@]}" down > "$out/down.log" 2>&1 || true
    "${scale[@]}" down > "$out/down-scale.log" 2>&1 || true
    podman network rm -f docker_default > /dev/null 2>&1 || true
    left=$(podman ps -a --format '{{.Names}}' | grep -E '^docker_(gmserve|nginx)' || true)
    [ -z "$left" ] || echo "test-deploy: containers left after down: $left"
}
trap cleanup EXIT
cleanup

# The build's apt-get reaches Debian through the host's network: on some
# machines (this sandbox's among them) the container bridge has no route out,
# while what runs afterwards only needs loopback and the pod network.
build=(podman build -q --network host --format docker)
echo "test-deploy: building the image ..."
t0=$(date +%s)
"${build[@]}" -f docker/Dockerfile -t localhost/gmserve:latest . > "$out/build.log" 2>&1 ||
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
image_user=$(podman image inspect --format '{{.Config.User}}' localhost/gmserve:latest)
[ "$image_user" = 10001:10001 ] || fail "the image's USER is \"$image_user\", not the numeric 10001:10001"
echo "test-deploy: runs as $user (image USER $image_user)"
curl -sf "$base/sample?model=gan&n=16" -o "$out/grid.png"
[ "$(head -c 8 "$out/grid.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "/sample is not a PNG"
curl -sf "$base/sample?model=nade&seed=1" -o "$out/nade.png"
curl -sf "$base/sample?model=gan&seed=7&n=4" -o "$out/gan-bundled.png"
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
"${compose[@]}" down > "$out/down.log" 2>&1

# ---- the own-model recipe: a host folder bind-mounted at /models, its files
# named in GMSERVE_MODELS, over the image's config that names "nade" as the
# default. A copy of the bundled GAN under another name must serve the same
# bytes for the same seed, as the default model, and alone.
rm -rf "$out/mine" && mkdir -p "$out/mine" && cp models/gan.safetensors "$out/mine/mine.safetensors"
chmod 755 "$out/mine" && chmod 644 "$out/mine/mine.safetensors"
GMSERVE_MODEL_DIR=$PWD/$out/mine GMSERVE_MODELS=mine=/models/mine.safetensors \
    "${compose[@]}" up -d > "$out/up-mine.log" 2>&1 || { cat "$out/up-mine.log"; fail "compose up with own model"; }
ready=""
for _ in $(seq 100); do
    if curl -sf "$base/readyz" > /dev/null; then ready=1; break; fi
    sleep 0.1
done
[ -n "$ready" ] || { podman logs "$container" 2>&1 | tail -5; fail "own model: /readyz not 200 within 10 s"; }
curl -sf "$base/sample?seed=7&n=4" -o "$out/gan-mine.png" || fail "own model: /sample failed"
# the pixels (IHDR and IDAT chunks) must match; the tEXt chunk names the model
same_pixels() {
    python3 -c 'import struct, sys
def pixels(path):
    data, out = open(path, "rb").read()[8:], b""
    while data:
        n, kind = struct.unpack(">I4s", data[:8])
        if kind in (b"IHDR", b"IDAT"): out += kind + data[8:8 + n]
        data = data[12 + n:]
    return out
sys.exit(pixels(sys.argv[1]) != pixels(sys.argv[2]))' "$1" "$2"
}
same_pixels "$out/gan-bundled.png" "$out/gan-mine.png" || fail "own model: not the bundled GAN's pixels for the same seed"
models=$(curl -sf "$base/v1/models")
echo "$models" | grep -q '"mine"' || fail "own model: /v1/models does not list mine ($models)"
echo "$models" | grep -q '"nade"' && fail "own model: the bundled models are still served ($models)"
echo "test-deploy: own model from a bind mount: served as the default, alone, same pixels as the bundled GAN"
"${compose[@]}" down > "$out/down.log" 2>&1

# ---- scale-out: three replicas behind nginx ----
echo "test-deploy: building nginx and starting three replicas ..."
"${build[@]}" -f docker/nginx.Dockerfile -t localhost/gmserve-nginx:latest . \
    > "$out/build-nginx.log" 2>&1 || { tail -20 "$out/build-nginx.log"; fail "podman build nginx"; }
"${scale[@]}" up -d > "$out/scale-up.log" 2>&1 || { tail -20 "$out/scale-up.log"; fail "scale up"; }
replica_ip() {
    podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "docker_$1_1"
}
served() { # model requests a replica has answered, from its own /metrics
    curl -sf --max-time 2 "http://$(replica_ip "$1"):8080/metrics" |
        awk '/^gmserve_inference_requests_total/ {s += $NF} END {print s + 0}'
}
ready=""
for _ in $(seq 150); do
    ok=0
    for r in gmserve1 gmserve2 gmserve3; do
        curl -sf --max-time 1 "http://$(replica_ip $r):8080/readyz" > /dev/null && ok=$((ok + 1))
    done
    if [ $ok -eq 3 ] && curl -sf --max-time 1 "$base/readyz" > /dev/null; then ready=1; break; fi
    sleep 0.2
done
[ -n "$ready" ] || { tail -20 "$out/scale-up.log"; fail "replicas or nginx not ready within 30 s"; }
for i in $(seq 60); do
    curl -sf -o /dev/null "$base/sample?model=gan&seed=$i" || fail "request $i through nginx failed"
done
spread="$(served gmserve1) $(served gmserve2) $(served gmserve3)"
echo "test-deploy: 60 requests through nginx, answered per replica: $spread"
for n in $spread; do [ "$n" -gt 0 ] || fail "a replica got no requests ($spread)"; done

# SIGKILL one replica under load, start it again, count failures. The
# restarted replica gets a new address and nginx reloads to reach it
# (docker/nginx-entrypoint.sh); a reload closes idle keep-alive client
# connections, which HTTP clients retry (RFC 9112 9.3.1) but wrk counts as
# errors, so this load opens a connection per request.
victim=docker_gmserve2_1
wrk -t2 -c8 -d20s --timeout 15s -H 'Connection: close' "$base/sample?model=gan&n=32&seed=5" \
    > "$out/kill-wrk.txt" 2>&1 &
wrk_pid=$!
sleep 5
podman kill "$victim" > /dev/null
echo "test-deploy: killed $victim (SIGKILL) under load"
sleep 5
podman start "$victim" > /dev/null 2>&1 || true
wait $wrk_pid || fail "wrk failed: $(cat "$out/kill-wrk.txt")"
total=$(awk '/requests in/ {print $1}' "$out/kill-wrk.txt")
bad=$(awk '/Non-2xx/ {print $NF}' "$out/kill-wrk.txt")
sock=$(grep 'Socket errors' "$out/kill-wrk.txt" || true)
echo "test-deploy: during the kill: $total requests, non-2xx ${bad:-0}, ${sock:-no socket errors}"
[ -z "$bad" ] && [ -z "$sock" ] || fail "requests failed while a replica was killed"

# the restarted replica rejoins: it answers some of the next requests
before=$(served gmserve2)
rejoined=""
for i in $(seq 60); do
    curl -sf -o /dev/null "$base/sample?model=gan&seed=$i" || fail "request after restart failed"
    if [ $((i % 10)) -eq 0 ] && [ "$(served gmserve2)" -gt "$before" ]; then rejoined=$i; break; fi
    sleep 0.1
done
[ -n "$rejoined" ] || fail "the restarted replica got no requests (nginx did not take it back)"
echo "test-deploy: restarted replica back in rotation (served a request within $rejoined requests)"
trap - EXIT
cleanup
[ -z "$(podman ps -a --format '{{.Names}}' | grep -E '^docker_(gmserve|nginx)')" ] || fail "containers left after down"
[ -z "$(podman network ls --format '{{.Name}}' | grep '^docker_')" ] || fail "a network left after down"
echo "test-deploy: down left no container or network"
echo "test-deploy: all checks passed"
