#!/usr/bin/env python3
"""Checks that Hugging Face loads a `hashee finetune` output and agrees with `hashee predict`.

Loads DIR with transformers.AutoModelForSequenceClassification and AutoTokenizer (float32,
eval, eager attention), computes the logits of the TSV column(s), and compares them with the
"logits" (classification) or "score" (regression) of hashee predict's JSON lines: the largest
absolute difference must be below --tolerance (1e-4). With --write-golden it also writes the
Hugging Face logits as the golden tests/cli_test.sh compares hashee predict with, so CI needs no
PyTorch:

    hashee finetune --model ~/.cache/hashee/all-MiniLM-L6-v2 --task sst2 --limit 48 --dev-limit 40 \\
        --epochs 2 --batch-size 16 --seed 3 --threads 2 --out /tmp/ft
    head -21 ../shared/data/elue/SST-2/dev.tsv > /tmp/dev20.tsv
    hashee predict --model /tmp/ft --tsv /tmp/dev20.tsv --column sentence --output /tmp/pred.jsonl
    python3 scripts/check_hf_checkpoint.py --model /tmp/ft --tsv /tmp/dev20.tsv --column sentence \\
        --predictions /tmp/pred.jsonl --write-golden tests/data/training/hf_predict.json
"""
import argparse
import csv
import json
import sys

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--column", action="append", required=True)
    ap.add_argument("--predictions", required=True, help="hashee predict's JSON lines")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--write-golden")
    args = ap.parse_args()

    with open(args.tsv, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [[r[c] for c in args.column] for r in rows]
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, attn_implementation="eager", dtype=torch.float32).eval()
    regression = model.config.problem_type == "regression" or model.config.num_labels == 1
    logits = []
    with torch.no_grad():
        for t in texts:
            enc = tok(*t, truncation=True, max_length=512, return_tensors="pt")
            logits.append(model(**enc).logits[0].tolist())

    preds = [json.loads(line) for line in open(args.predictions)]
    assert [p["index"] for p in preds] == list(range(len(texts))), "predictions out of order or missing"
    ours = [[p["score"]] if regression else p["logits"] for p in preds]
    gap = max(abs(a - b) for u, v in zip(ours, logits) for a, b in zip(u, v))
    labels_agree = sum(int(max(range(len(u)), key=u.__getitem__) == max(range(len(v)), key=v.__getitem__))
                       for u, v in zip(ours, logits))
    print(f"{len(texts)} inputs: largest |hashee predict - transformers| logit gap {gap:.3g} "
          f"(tolerance {args.tolerance:g}); argmax agrees on {labels_agree}/{len(texts)}")
    if args.write_golden:
        golden = {"reference": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                               "AutoModelForSequenceClassification float32 eval, eager attention",
                  "model": "the hashee finetune output of the command in scripts/check_hf_checkpoint.py",
                  "column": args.column, "inputs": len(texts), "regression": regression,
                  "logits": logits, "hashee_gap_when_written": gap}
        with open(args.write_golden, "w") as f:
            json.dump(golden, f, indent=1)
            f.write("\n")
    return 0 if gap < args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
