#!/usr/bin/env bash
# The CUDA variant (thrust_backend<thrust_cuda>): nvcc builds the CUDA quickstart and the
# backend-generic tests over it (docs/backends.md). CI runs this without a GPU, so the build is
# the check; with --run (on a machine with a GPU) the CUDA tests run too. Idempotent.
# Environment: HASHEE_CUDA_BUILD_DIR (default build-cuda), HASHEE_ELUE_DIR, HASHEE_CACHE.
set -euo pipefail
cd "$(dirname "$0")/.."
run_tests=OFF
[ "${1:-}" = --run ] && run_tests=ON
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_CUDA_BUILD_DIR:-build-cuda}
elue=$(bash scripts/elue_dir.sh)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHASHEE_CUDA=ON -DHASHEE_CUDA_TESTS=$run_tests \
  -DHASHEE_BUILD_TESTS=ON -DHASHEE_BUILD_EXAMPLES=ON -DHASHEE_BUILD_BENCH=OFF -DHASHEE_BUILD_BUILD_CHECKS=OFF \
  -DHASHEE_REQUIRE_THRUST=ON -DHASHEE_TEST_MODEL_DIR="$model_dir" -DHASHEE_TEST_ELUE_DIR="$elue"
cmake --build "$build" -j "$(nproc)" --target hashee_cuda_all
echo "cuda: the CUDA quickstart and tests built with $(nvcc --version | tail -n 1)"
if [ "$run_tests" = ON ]; then
  HASHEE_MODEL_DIR="$model_dir" HASHEE_ELUE_DIR="$elue" ctest --test-dir "$build" -R '^cuda\.' --output-on-failure --no-tests=error
  "$build/examples/quickstart_cuda" "$model_dir"
fi
