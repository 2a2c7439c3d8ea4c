#!/usr/bin/env bash
# Builds and runs the benchmarks on the real model: dense encoder against the GEMM ceiling
# (bench/bench_encoder.cpp), then HashEE against dense (bench/bench_hashee.cpp).
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_encoder bench_hashee -j "$(nproc)"
export HASHEE_MODEL_DIR="$model_dir" HASHEE_ELUE_DIR="$(bash scripts/elue_dir.sh --require)"
"$build/bench/bench_encoder" "$@"
"$build/bench/bench_hashee"
