#!/usr/bin/env bash
# The main job, end to end on a fresh machine: sets up (packages, the real all-MiniLM-L6-v2),
# builds the hashee command, and embeds the SST-2 dev sentences with it, printing sentences/s.
# Idempotent. Environment: HASHEE_BUILD_DIR, HASHEE_ELUE_DIR, HASHEE_CACHE, HASHEE_THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
elue=${HASHEE_ELUE_DIR:-$PWD/../shared/data/elue}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target hashee_cli -j "$(nproc)"
out="$build/sst2-dev-embeddings.jsonl"
"$build/examples/hashee" embed --model "$model_dir" --tsv "$elue/SST-2/dev.tsv" --column sentence \
  --threads "${HASHEE_THREADS:-$(nproc)}" --output "$out"
echo "wrote $(wc -l < "$out") embeddings to $out"
