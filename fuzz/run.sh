#!/usr/bin/env bash
# fuzz/run.sh BUILD NAME SECONDS MAX_LEN MALLOC_MB [FLAG...] - one harness for make fuzz:
# replays fuzz/regressions/NAME/* (each must pass), then fuzzes for SECONDS
# from the committed seeds with the dictionary fuzz/NAME.dict, writing new inputs to BUILD/corpus/NAME and any
# crashing one to BUILD/crashes/NAME. Fails if an input crashed. FLAGs are
# more libFuzzer options for the fuzzing run.
set -euo pipefail
build=$1 name=$2 secs=$3 max_len=$4 malloc_mb=$5
shift 5
bin=$build/fuzz_$name
opts=(-rss_limit_mb=2048 "-malloc_limit_mb=$malloc_mb" "-max_len=$max_len" -timeout=30)
dict=fuzz/$name.dict # tokens of the input's format, for the mutator
[ -f "$dict" ] && opts+=("-dict=$dict")
export OPENBLAS_NUM_THREADS=1 # one core per harness
mkdir -p "$build/corpus/$name" "$build/crashes/$name"
log=$build/fuzz_$name.log

shopt -s nullglob
regressions=(fuzz/regressions/"$name"/*)
if ((${#regressions[@]})); then
    if ! "$bin" "${opts[@]}" "${regressions[@]}" >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz $name: a regression input of fuzz/regressions/$name crashes (log: $log)" >&2
        exit 1
    fi
fi

if ! "$bin" "${opts[@]}" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$build/crashes/$name/" \
    "$@" "$build/corpus/$name" "fuzz/corpus/$name" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz $name: crash; input in $build/crashes/$name/ (log: $log)" >&2
    exit 1
fi
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
echo "fuzz $name: ${#regressions[@]} regression input(s) pass; $execs runs in ${secs} s, no crash; ${last#* }"
