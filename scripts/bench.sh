#!/usr/bin/env bash
# Builds and runs the dense encoder benchmark (bench/bench_encoder.cpp) on the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_encoder -j "$(nproc)"
HASHEE_MODEL_DIR="$model_dir" HASHEE_ELUE_DIR="${HASHEE_ELUE_DIR:-$PWD/../shared/data/elue}" \
  "$build/bench/bench_encoder" "$@"
