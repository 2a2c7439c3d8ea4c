#!/usr/bin/env bash
# Regenerates the result pages in docs/ with the real all-MiniLM-L6-v2:
#   bash scripts/eval.sh [ARGS]            docs/hashee-results.md and its plots: dense against
#                                          every hash policy on STS-B and SST-2 dev (`hashee eval`);
#   bash scripts/eval.sh baselines [ARGS]  docs/baselines.md and its plots: static-k, DeeBERT,
#                                          FastBERT, PABEE, BERxiT, HashEE and HashEE + entropy,
#                                          heads trained here on the frozen backbone (`hashee baselines`).
# ARGS go to the hashee command (e.g. --train-samples 2000 --epochs 2).
set -euo pipefail
cd "$(dirname "$0")/.."
command=eval
if [ "${1:-}" = baselines ]; then command=baselines; shift; fi
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target hashee_cli -j "$(nproc)"
"$build/examples/hashee" "$command" --model "$model_dir" --elue "$(bash scripts/elue_dir.sh --require)" --out docs "$@"
