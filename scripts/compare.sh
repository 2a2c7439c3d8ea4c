#!/usr/bin/env bash
# hashee (fp32, bf16, int8; dense and HashEE) beside ONNX Runtime (fp32, int8), CTranslate2
# (fp32, int8) and PyTorch on the same all-MiniLM-L6-v2, interleaved in one run
# (scripts/compare.py says how): sets up what it needs (packages, the model, the Python
# packages onnxruntime, onnx, torch, transformers, matplotlib and ctranslate2 from PyPI where
# missing), builds the hashee command and libhashee_compare.so, builds the HashEE table
# (frequency hash, 2x FLOPs on SST-2 train); compare.py exports the model to ONNX, quantizes it,
# converts it for CTranslate2 (each cached in $HASHEE_BUILD_DIR/compare), measures, and writes
# docs/comparison.md and docs/comparison.svg. Idempotent. Arguments go to scripts/compare.py
# (e.g. --rounds 5; quick check: --limit 64 --rounds 1 --batches 1,8 --out-md /tmp/cmp.md
# --out-svg /tmp/cmp.svg; --contestants "hashee int8 dense,ONNX Runtime int8").
# Environment: HASHEE_BUILD_DIR (default build), HASHEE_ELUE_DIR, HASHEE_THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
build=${HASHEE_BUILD_DIR:-build}
elue=$(bash scripts/elue_dir.sh --require)
threads=${HASHEE_THREADS:-2}

need=()
for m in onnxruntime onnx torch transformers matplotlib ctranslate2; do
  python3 -c "import $m" 2>/dev/null || need+=("$m")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "compare: pip install ${need[*]}" >&2
  python3 -m pip install --quiet "${need[@]}"
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHASHEE_BUILD_BENCH=ON >/dev/null
cmake --build "$build" --target hashee_cli hashee_compare -j "$(nproc)"
work="$build/compare"
mkdir -p "$work"
table="$work/sst2-frequency-2x.json"
if [ ! -s "$table" ]; then
  "$build/examples/hashee" hash build --model "$model_dir" --policy frequency --corpus "$elue/SST-2/train.tsv" \
    --column sentence --target 2 --out "$table" --threads "$threads"
fi
python3 scripts/compare.py --model-dir "$model_dir" --elue-dir "$elue" --lib "$build/bench/libhashee_compare.so" \
  --table "$table" --work-dir "$work" --threads "$threads" "$@"
