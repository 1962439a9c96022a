#!/usr/bin/env bash
# make bench-core: PyTorch and gmserve's core on the same weights, same run.
set -euo pipefail
build=${1:-build}
out="$build/bench"
mkdir -p "$out"
threads=${BENCH_THREADS:-2}
echo "bench-core: writing models and timing PyTorch ($threads threads) ..."
OMP_NUM_THREADS=$threads BENCH_THREADS=$threads ${TORCH_PY:-/usr/bin/python3} bench/torch_core.py "$out"
echo "bench-core: timing gmserve (OpenBLAS $threads threads) ..."
OPENBLAS_NUM_THREADS=$threads "$build/bench_core" "$out"
