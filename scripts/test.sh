#!/usr/bin/env bash
# Sets up a fresh machine (packages, the real model), builds everything and runs the whole
# test suite. Idempotent. Environment: HASHEE_BUILD_DIR (default build), HASHEE_ELUE_DIR
# (default ../shared/data/elue), HASHEE_CACHE (default ~/.cache/hashee).
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
elue=$(bash scripts/elue_dir.sh --require)
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHASHEE_BUILD_TESTS=ON -DHASHEE_BUILD_EXAMPLES=ON \
  -DHASHEE_BUILD_BENCH=ON -DHASHEE_REQUIRE_THRUST=ON -DHASHEE_REQUIRE_DNNL=ON -DHASHEE_TEST_MODEL_DIR="$model_dir" -DHASHEE_TEST_ELUE_DIR="$elue"
cmake --build "$build" -j "$jobs"
HASHEE_MODEL_DIR="$model_dir" HASHEE_ELUE_DIR="$elue" \
  ctest --test-dir "$build" --output-on-failure --no-tests=error -j "$jobs"
