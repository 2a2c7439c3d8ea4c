#!/usr/bin/env bash
# The main job, end to end on a fresh machine: sets up (packages, the real all-MiniLM-L6-v2),
# builds the hashee command, then shows HashEE at work next to the dense model:
#  1. builds a frequency hash table meeting a 2x FLOPs speed-up on SST-2 train text;
#  2. embeds the SST-2 dev sentences dense and with HashEE exits (sentences/s, FLOPs ratio);
#  3. STS-B dev quality (Spearman), FLOPs ratio and time, dense and HashEE side by side.
# Idempotent. Environment: HASHEE_BUILD_DIR, HASHEE_ELUE_DIR, HASHEE_CACHE, HASHEE_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
elue=$(bash scripts/elue_dir.sh --require)
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
threads=${HASHEE_THREADS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target hashee_cli -j "$(nproc)"
hashee="$build/examples/hashee"

echo "== 1. HashEE table: frequency hash, 2x FLOPs on SST-2 train"
"$hashee" hash build --model "$model_dir" --policy frequency --corpus "$elue/SST-2/train.tsv" --column sentence \
  --target 2 --out "$build/sst2-frequency-2x.json" --threads "$threads"
echo "== 2. SST-2 dev embeddings: dense, then HashEE"
"$hashee" embed --model "$model_dir" --tsv "$elue/SST-2/dev.tsv" --column sentence --threads "$threads" \
  --output "$build/sst2-dev-dense.jsonl"
"$hashee" embed --model "$model_dir" --tsv "$elue/SST-2/dev.tsv" --column sentence --threads "$threads" \
  --exit "$build/sst2-frequency-2x.json" --output "$build/sst2-dev-hashee.jsonl"
echo "== 3. STS-B dev: dense and HashEE side by side (quality, FLOPs, time)"
"$hashee" eval --model "$model_dir" --elue "$elue" --tasks stsb --policies frequency --targets 2 --kv keep \
  --threads "$threads" 2>/dev/null
echo "Full grid of policies, speed-ups and tasks: docs/hashee-results.md (scripts/eval.sh)"
