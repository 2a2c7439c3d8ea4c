#!/usr/bin/env bash
# Training throughput and peak memory, hashee against PyTorch, side by side on this machine:
# `hashee finetune` and scripts/finetune_pytorch.py (the same recipe: all-MiniLM-L6-v2, a new
# classifier, AdamW, clipping, dropout 0.1, batch 32) on the first EXAMPLES SST-2 training
# sentences, one epoch each, ROUNDS interleaved rounds, the same THREADS. Prints the CPU, what
# each library runs its products on, examples/s (training steps only) and peak resident memory
# of each round, and the medians' ratios.
#   bash bench/train_speed.sh [HASHEE_BINARY]
# Environment: HASHEE_MODEL_DIR (~/.cache/hashee/all-MiniLM-L6-v2), HASHEE_ELUE_DIR
# (../shared/data/elue), EXAMPLES (640), ROUNDS (2), THREADS (2), TASK (sst2).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/examples/hashee}
model=${HASHEE_MODEL_DIR:-$HOME/.cache/hashee/all-MiniLM-L6-v2}
elue=$(bash scripts/elue_dir.sh --require)
examples=${EXAMPLES:-640} rounds=${ROUNDS:-2} threads=${THREADS:-2} task=${TASK:-sst2}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') ($(nproc) cores visible), $threads threads each"
python3 - <<'PY'
import torch
print(f"PyTorch {torch.__version__}: CPU capability {torch.backends.cpu.get_cpu_capability()}, "
      f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}, MKL {'on' if torch.backends.mkl.is_available() else 'off'}")
PY
isa=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_bf16|avx512_vnni|amx_tile' | paste -sd' ')
echo "CPU family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | tr -d ' '), model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | tr -d ' '); instruction sets: $isa"
echo "hashee: training products by Eigen $(grep -oE 'EIGEN_(WORLD|MAJOR|MINOR)_VERSION [0-9]+' /usr/include/eigen3/Eigen/src/Core/util/Macros.h | awk '{print $2}' | paste -sd.) built with -march=native (its AVX-512 kernels where the CPU has avx512f)"
echo "task $task, $examples examples, batch 32, one epoch per round"
for r in $(seq "$rounds"); do
  python3 scripts/finetune_pytorch.py --model "$model" --elue "$elue" --task "$task" --limit "$examples" --epochs 1 \
    --no-dev --threads "$threads" 2> /dev/null > "$tmp/torch$r.json"
  "$bin" finetune --model "$model" --elue "$elue" --task "$task" --limit "$examples" --dev-limit 8 --epochs 1 \
    --threads "$threads" --quiet --out "$tmp/hashee$r"
  cp "$tmp/hashee$r/hashee_finetune.json" "$tmp/hashee$r.json"
  rm -rf "$tmp/hashee$r"
done
python3 - "$tmp" "$rounds" <<'PY'
import json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
rows = {k: [json.load(open(f"{tmp}/{k}{r}.json")) for r in range(1, rounds + 1)] for k in ("torch", "hashee")}
for k, rs in rows.items():
    for r, x in enumerate(rs, 1):
        print(f"round {r} {k:7s}: {x['train_examples_per_s']:7.1f} examples/s, peak RSS {x['peak_rss_mb']:7.0f} MiB")
med = {k: (statistics.median(x["train_examples_per_s"] for x in rs), statistics.median(x["peak_rss_mb"] for x in rs))
       for k, rs in rows.items()}
print(f"hashee / PyTorch: throughput {med['hashee'][0] / med['torch'][0]:.2f}x, "
      f"peak memory {med['hashee'][1] / med['torch'][1]:.2f}x (medians)")
PY
