#!/usr/bin/env bash
# make bench-core: PyTorch and gmserve's core on the same weights, in
# BENCH_ROUNDS interleaved rounds (PyTorch, gmserve, PyTorch, ...), then one
# table of medians and ranges over the rounds. BENCH_THREADS (default 1)
# threads each side: with one, the rates are per core. BENCH_OPS (a
# comma-separated list of operation names, e.g. pixelcnn_logp) times only
# those, on both sides.
set -euo pipefail
build=${1:-build}
out="$build/bench"
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-1}
mkdir -p "$out"
rm -f "$out"/gm.*.json "$out"/torch.*.json
py=${TORCH_PY:-/usr/bin/python3}
BENCH_WRITE_ONLY=1 "$py" bench/torch_core.py "$out"
for r in $(seq 1 "$rounds"); do
    echo "bench-core: round $r of $rounds: PyTorch ($threads threads), then gmserve (OpenBLAS $threads threads) ..."
    OMP_NUM_THREADS=$threads BENCH_THREADS=$threads "$py" bench/torch_core.py "$out" "$r"
    OPENBLAS_NUM_THREADS=$threads "$build/bench_core" "$out" "$r"
done
"$build/bench_core" "$out"
