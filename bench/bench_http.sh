#!/usr/bin/env bash
# make bench-http: the live daemon under load from wrk on loopback, with
# batching (the default settings) and without (max_batch = 1), same run.
#
# For each operation (GAN /sample n=1 as JSON, VAE /encode of one PNG, NADE
# /logp of one PNG) and concurrency 1, 8, 64 it prints requests/s and the
# p50/p99 latency wrk measures, and the ratio batched / unbatched. Models:
# the bundled ones in models/ when present, else the default architectures
# that bench-core writes (build/bench, needs python3-torch). wrk shares the
# 2 cores with the server, so absolute numbers are lower than a separate
# client machine would see; the ratio is the point.
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-5}
out="$build/bench-http"
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench-http: needs wrk (apt-get install wrk)"; exit 1; }

if [ -f models/nade.safetensors ] && [ -f models/vae.safetensors ] && [ -f models/gan.safetensors ]; then
    dir=models
else
    dir="$build/bench"
    if [ ! -f "$dir/gan.safetensors" ]; then
        echo "bench-http: writing the default-architecture models (python3-torch) ..."
        mkdir -p "$dir"
        OMP_NUM_THREADS=1 BENCH_THREADS=1 BENCH_WRITE_ONLY=1 ${TORCH_PY:-/usr/bin/python3} bench/torch_core.py "$dir" >/dev/null
    fi
fi
echo "bench-http: models from $dir; ${secs} s per cell"
echo '{}' > "$out/empty.json"

port=18571
start() { # extra flags...
    OPENBLAS_NUM_THREADS=1 "$build/gmserve" --config "$out/empty.json" --listen 127.0.0.1:$port --log-format off \
        --model nade=$dir/nade.safetensors --model vae=$dir/vae.safetensors --model gan=$dir/gan.safetensors \
        "$@" 2>"$out/daemon.log" &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
    echo "bench-http: daemon did not start; see $out/daemon.log"; exit 1
}
stop() { kill -TERM $pid; wait $pid || true; }

# The request bodies: a PNG that the server itself made.
start
curl -sf "http://127.0.0.1:$port/sample?model=nade&seed=1" -o "$out/nade.png"
curl -sf "http://127.0.0.1:$port/sample?model=vae&seed=1" -o "$out/vae.png"
stop
cat > "$out/post.lua" <<'LUA'
wrk.method = "POST"
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = os.getenv("BODY_TYPE")
LUA
echo '{"n": 1}' > "$out/sample.json"

ops=("gan_sample|/v1/models/gan/sample|$out/sample.json|application/json"
     "vae_encode|/v1/models/vae/encode|$out/vae.png|image/png"
     "nade_logp|/v1/models/nade/logp|$out/nade.png|image/png")
# one wrk run: prints "rps p50_ms p99_ms non2xx"
measure() { # path body type concurrency
    local threads=$(( $4 < 2 ? 1 : 2 ))
    BODY_FILE=$2 BODY_TYPE=$3 wrk -t$threads -c$4 -d${secs}s --latency -s "$out/post.lua" \
        "http://127.0.0.1:$port$1" > "$out/wrk.txt"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx/ { bad = $5 }
        END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad + 0 }' "$out/wrk.txt"
}

declare -A result
for mode in batched unbatched; do
    if [ $mode = batched ]; then start ${BENCH_FLAGS:-}; else start --max-batch 1; fi
    for op in "${ops[@]}"; do
        IFS='|' read -r name path body type <<< "$op"
        for c in 1 8 64; do
            result[$mode,$name,$c]=$(measure "$path" "$body" "$type" "$c")
            echo "  $mode $name c=$c: ${result[$mode,$name,$c]}" >&2
        done
    done
    stop
done

echo
echo "| op | concurrency | batched req/s | p50 ms | p99 ms | max_batch=1 req/s | p50 ms | p99 ms | req/s ratio | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for op in "${ops[@]}"; do
    name=${op%%|*}
    for c in 1 8 64; do
        read -r br bp50 bp99 bbad <<< "${result[batched,$name,$c]}"
        read -r ur up50 up99 ubad <<< "${result[unbatched,$name,$c]}"
        ratio=$(awk -v a="$br" -v b="$ur" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
        echo "| $name | $c | $br | $bp50 | $bp99 | $ur | $up50 | $up99 | $ratio | $((bbad + ubad)) |"
    done
done
