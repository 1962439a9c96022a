#!/usr/bin/env bash
# make bench-http: the live daemon under load from wrk on loopback, with
# batching (the default settings) and without (max_batch = 1).
#
# Both daemons run at once, on two ports, and every cell alternates between
# them (batched, unbatched, then unbatched, batched, BENCH_ROUNDS times of
# BENCH_SECONDS each), so that the drift of a shared machine lands on both
# sides alike instead of on their ratio. For each operation (GAN /sample
# n=1 as JSON, VAE /encode of one PNG, NADE /logp of one PNG) and
# concurrency 1, 8, 64 it prints the median requests/s of each side with
# its range over the rounds, the median p50/p99 latency wrk measures, the
# ratio of the medians and the range of the per-round ratios. Models: the
# bundled ones in models/ when present, else the default architectures that
# bench-core writes (build/bench, needs python3-torch). wrk shares the 2
# cores with the server, so absolute numbers are lower than a separate
# client machine would see.
set -euo pipefail
build=${1:-build}
secs=${BENCH_SECONDS:-3}
rounds=${BENCH_ROUNDS:-4}
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
echo "bench-http: models from $dir; $rounds interleaved rounds of ${secs} s per cell"
echo '{}' > "$out/empty.json"

declare -A port=([batched]=18571 [unbatched]=18572) pid=()
start() { # mode extra flags...
    local mode=$1; shift
    OPENBLAS_NUM_THREADS=1 "$build/gmserve" --config "$out/empty.json" --listen 127.0.0.1:${port[$mode]} \
        --log-format off --model nade=$dir/nade.safetensors --model vae=$dir/vae.safetensors \
        --model gan=$dir/gan.safetensors "$@" 2>"$out/daemon-$mode.log" &
    pid[$mode]=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:${port[$mode]}/readyz" >/dev/null && return; sleep 0.1; done
    echo "bench-http: daemon did not start; see $out/daemon-$mode.log"; exit 1
}
stop() { for m in "${!pid[@]}"; do kill -TERM "${pid[$m]}" 2>/dev/null || true; wait "${pid[$m]}" || true; done; }
trap stop EXIT
# shellcheck disable=SC2086
start batched ${BENCH_FLAGS:-}
start unbatched --max-batch 1

# The request bodies: a PNG that the server itself made.
curl -sf "http://127.0.0.1:${port[batched]}/sample?model=nade&seed=1" -o "$out/nade.png"
curl -sf "http://127.0.0.1:${port[batched]}/sample?model=vae&seed=1" -o "$out/vae.png"
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
measure() { # mode path body type concurrency
    local threads=$(( $5 < 2 ? 1 : 2 ))
    BODY_FILE=$3 BODY_TYPE=$4 wrk -t$threads -c$5 -d${secs}s --latency -s "$out/post.lua" \
        "http://127.0.0.1:${port[$1]}$2" > "$out/wrk.txt"
    awk '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        /Requests\/sec/ { rps = $2 }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /Non-2xx/ { bad = $5 }
        END { printf "%.0f %.2f %.2f %d\n", rps, p50, p99, bad + 0 }' "$out/wrk.txt"
}
# median, min and max of the numbers on stdin
stats() { sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%g %g %g\n", m, v[1], v[NR] }'; }

echo
echo "| op | concurrency | batched req/s | p50 ms | p99 ms | max_batch=1 req/s | p50 ms | p99 ms | ratio of medians | per-round ratios | non-2xx |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for op in "${ops[@]}"; do
    IFS='|' read -r name path body type <<< "$op"
    for c in 1 8 64; do
        : > "$out/cell.txt"
        for r in $(seq "$rounds"); do
            if [ $((r % 2)) -eq 1 ]; then order="batched unbatched"; else order="unbatched batched"; fi
            declare -A got=()
            for mode in $order; do got[$mode]=$(measure "$mode" "$path" "$body" "$type" "$c"); done
            echo "${got[batched]} ${got[unbatched]}" >> "$out/cell.txt"
            echo "  $name c=$c round $r: batched ${got[batched]} | unbatched ${got[unbatched]}" >&2
        done
        col() { awk -v k="$1" '{ print $k }' "$out/cell.txt" | stats; }
        read -r br brlo brhi <<< "$(col 1)"; read -r bp50 _ _ <<< "$(col 2)"; read -r bp99 _ _ <<< "$(col 3)"
        read -r ur urlo urhi <<< "$(col 5)"; read -r up50 _ _ <<< "$(col 6)"; read -r up99 _ _ <<< "$(col 7)"
        read -r _ rlo rhi <<< "$(awk '{ print ($5 > 0 ? $1 / $5 : 0) }' "$out/cell.txt" | stats)"
        bad=$(awk '{ s += $4 + $8 } END { print s + 0 }' "$out/cell.txt")
        ratio=$(awk -v a="$br" -v b="$ur" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }')
        printf "| %s | %s | %.0f [%.0f-%.0f] | %.2f | %.2f | %.0f [%.0f-%.0f] | %.2f | %.2f | %s | %.2f-%.2f× | %s |\n" \
            "$name" "$c" "$br" "$brlo" "$brhi" "$bp50" "$bp99" "$ur" "$urlo" "$urhi" "$up50" "$up99" "$ratio" "$rlo" "$rhi" "$bad"
    done
done
