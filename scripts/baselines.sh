#!/usr/bin/env bash
# Regenerates docs/baselines.md and its plots (docs/baselines-sst2.svg, docs/baselines-sst2-exits.svg,
# docs/baselines-stsb.svg): static-k, DeeBERT, FastBERT, PABEE, BERxiT, HashEE and HashEE +
# entropy on SST-2 and STS-B dev, heads trained here on the frozen all-MiniLM-L6-v2.
# Extra arguments go to `hashee baselines` (e.g. --train-samples 2000 --epochs 2).
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target hashee_cli -j "$(nproc)"
"$build/examples/hashee" baselines --model "$model_dir" --elue "${HASHEE_ELUE_DIR:-../shared/data/elue}" --out docs "$@"
