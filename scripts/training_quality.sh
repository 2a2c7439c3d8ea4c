#!/usr/bin/env bash
# Fine-tuning quality, hashee against PyTorch, with the same recipe, seeds and data order
# (scripts/finetune_pytorch.py): all-MiniLM-L6-v2 fine-tuned dense on each task, the best dev
# epoch's metric per seed, and the mean over the seeds. Writes docs/training-quality.md.
#   bash scripts/training_quality.sh [HASHEE_BINARY]
# Environment: TASKS ("sst2 mrpc stsb stsb-cosine"), SEEDS ("0 1 2"), EPOCHS (3), THREADS (2),
# LIMIT (0: every training example), OUT (docs/training-quality.md), HASHEE_MODEL_DIR, HASHEE_ELUE_DIR.
# The full grid (4 tasks x 3 seeds x 2 libraries x 3 epochs) takes hours on 2 cores; a reduced
# one: TASKS=mrpc SEEDS=0.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-build/examples/hashee}
model=${HASHEE_MODEL_DIR:-$HOME/.cache/hashee/all-MiniLM-L6-v2}
elue=$(bash scripts/elue_dir.sh --require)
tasks=${TASKS:-"sst2 mrpc stsb stsb-cosine"} seeds=${SEEDS:-"0 1 2"} epochs=${EPOCHS:-3} threads=${THREADS:-2}
limit=${LIMIT:-0} out=${OUT:-docs/training-quality.md}
runs=$(mktemp -d); trap 'rm -rf "$runs"' EXIT
started=$(date -u +%s)
for t in $tasks; do
  task=${t%%-*} objective=$([ "$t" = stsb-cosine ] && echo cosine || true)
  for s in $seeds; do
    echo "training_quality: $t seed $s" >&2
    "$bin" finetune --model "$model" --elue "$elue" --task "$task" ${objective:+--objective $objective} --epochs "$epochs" \
      --seed "$s" --threads "$threads" --limit "$limit" --quiet --out "$runs/h-$t-$s"
    cp "$runs/h-$t-$s/hashee_finetune.json" "$runs/hashee-$t-$s.json"
    rm -rf "$runs/h-$t-$s"
    python3 scripts/finetune_pytorch.py --model "$model" --elue "$elue" --task "$task" ${objective:+--objective $objective} \
      --epochs "$epochs" --seed "$s" --threads "$threads" --limit "$limit" 2> /dev/null > "$runs/torch-$t-$s.json"
  done
done
minutes=$(( ($(date -u +%s) - started + 59) / 60 ))
python3 - "$runs" "$out" "$tasks" "$seeds" "$epochs" "$limit" "$minutes" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" <<'PY'
import datetime, json, statistics, sys
runs, out, tasks, seeds, epochs, limit, minutes, cpu = sys.argv[1:]
tasks, seeds = tasks.split(), seeds.split()
lines = [f"# Fine-tuning quality: hashee against PyTorch", "",
         f"Generated {datetime.date.today()} by `TASKS=\"{' '.join(tasks)}\" SEEDS=\"{' '.join(seeds)}\" EPOCHS={epochs} "
         f"LIMIT={limit} bash scripts/training_quality.sh` on {cpu}, 2 threads, in {minutes} min. all-MiniLM-L6-v2 "
         f"fine-tuned dense, batch 32, lr 5e-5, {epochs} epochs, the best dev epoch per seed (ELUE dev splits; "
         "x100: accuracy, MRPC (accuracy + F1) / 2, STS-B (Pearson + Spearman) / 2). PyTorch: "
         "scripts/finetune_pytorch.py, the same classifier initialisation and data order; its dropout masks differ.", "",
         "| task | objective | hashee per seed | hashee mean | PyTorch per seed | PyTorch mean | hashee − PyTorch | hashee s/epoch | PyTorch s/epoch |",
         "|---|---|---|---|---|---|---|---|---|"]
for t in tasks:
    h = [json.load(open(f"{runs}/hashee-{t}-{s}.json")) for s in seeds]
    p = [json.load(open(f"{runs}/torch-{t}-{s}.json")) for s in seeds]
    hb, pb = [100 * x["best"] for x in h], [100 * x["best"] for x in p]
    lines.append(f"| {t.split('-')[0]} | {h[0]['objective']} | {', '.join(f'{v:.2f}' for v in hb)} | {statistics.mean(hb):.2f} | "
                 f"{', '.join(f'{v:.2f}' for v in pb)} | {statistics.mean(pb):.2f} | {statistics.mean(hb) - statistics.mean(pb):+.2f} | "
                 f"{statistics.median(r['seconds'] for x in h for r in x['history']):.0f} | "
                 f"{statistics.median(r['seconds'] for x in p for r in x['history']):.0f} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
