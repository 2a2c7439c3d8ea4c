#!/usr/bin/env bash
# Regenerates docs/hashee-results.md and its plots (docs/hashee-stsb.svg, docs/hashee-sst2.svg):
# dense against every hash policy on STS-B and SST-2 dev with the real all-MiniLM-L6-v2.
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target hashee_cli -j "$(nproc)"
"$build/examples/hashee" eval --model "$model_dir" --elue "${HASHEE_ELUE_DIR:-../shared/data/elue}" --out docs "$@"
