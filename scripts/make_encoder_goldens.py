#!/usr/bin/env python3
"""Regenerate the encoder parity goldens (tests/data/encoder/) with Hugging Face transformers.

For each input (single texts and pairs of real ELUE sentences, plus stitched texts that reach
256 tokens and raw id sequences of length 1 and 2) the reference runs BertModel alone
(batch size 1, float32, eval, no_grad) and records the token ids, the last hidden states, the
pooler output and the mean-pooled embedding with and without L2 normalisation.

Output: manifest.json (inputs, ids, and where each output starts in the binary file) and
outputs.f32 (little-endian float32). Deterministic for a given model and data.

    python3 scripts/make_encoder_goldens.py --model-dir ~/.cache/hashee/all-MiniLM-L6-v2 \
        --elue-dir ../shared/data/elue --out tests/data/encoder
"""
import argparse
import csv
import json
import os
import random

import numpy as np
import torch
from transformers import BertModel, BertTokenizer


def read_tsv(path, columns):
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = rows[0]
    idx = [header.index(c) for c in columns]
    return [[r[i] for i in idx] for r in rows[1:] if len(r) == len(header)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--elue-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-length", type=int, default=256)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = random.Random(1234)
    tok = BertTokenizer.from_pretrained(args.model_dir)
    model = BertModel.from_pretrained(args.model_dir, torch_dtype=torch.float32).eval()

    sst = [r[0] for r in read_tsv(os.path.join(args.elue_dir, "SST-2", "dev.tsv"), ["sentence"])]
    sts = read_tsv(os.path.join(args.elue_dir, "STS-B", "dev.tsv"), ["sentence1", "sentence2"])
    mrpc = read_tsv(os.path.join(args.elue_dir, "MRPC", "dev.tsv"), ["#1 String", "#2 String"])

    inputs = []  # dicts: {"text": ..., "pair": ...} or {"ids": [...]}
    inputs.append({"ids": [tok.cls_token_id]})                       # 1 token
    inputs.append({"ids": [tok.cls_token_id, tok.sep_token_id]})     # 2 tokens
    inputs.append({"text": "hi"})
    inputs.append({"text": "A"})
    for s in rng.sample(sst, 30):
        inputs.append({"text": s})
    for a, b in rng.sample(sts, 12):
        inputs.append({"text": a, "pair": b})
    for a, b in rng.sample(mrpc, 6):
        inputs.append({"text": a, "pair": b})
    # Long inputs: real sentences stitched until the tokenizer truncates at max_length.
    for target_words in (60, 100, 150, 1000):
        words, pool = [], list(sst)
        rng.shuffle(pool)
        for s in pool:
            if len(words) >= target_words:
                break
            words.extend(s.split())
        inputs.append({"text": " ".join(words[:target_words])})
    for a_words, b_words in ((300, 40), (30, 500)):
        pool = list(sst)
        rng.shuffle(pool)
        text = " ".join(" ".join(pool[:40]).split())
        w = text.split()
        inputs.append({"text": " ".join(w[:a_words]), "pair": " ".join(w[a_words:a_words + b_words])})
    while len(inputs) < 66:
        a, b = rng.choice(sts)
        inputs.append({"text": a + " " + b})

    blobs, manifest = [], []
    cursor = 0
    with torch.no_grad():
        for item in inputs:
            if "ids" in item:
                ids, types = item["ids"], [0] * len(item["ids"])
            else:
                enc = tok(item["text"], item.get("pair"), truncation=True, max_length=args.max_length)
                ids, types = enc["input_ids"], enc["token_type_ids"]
            out = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types]),
                        attention_mask=torch.ones(1, len(ids), dtype=torch.long))
            hidden = out.last_hidden_state[0].numpy().astype("<f4")
            pooler = out.pooler_output[0].numpy().astype("<f4")
            mean = hidden.mean(axis=0)
            norm = mean / max(np.linalg.norm(mean), 1e-12)
            entry = dict(item)
            entry.update({"input_ids": ids, "token_type_ids": types, "offset": cursor})
            manifest.append(entry)
            for arr in (hidden.reshape(-1), pooler, mean.astype("<f4"), norm.astype("<f4")):
                blobs.append(arr)
                cursor += arr.size

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "outputs.f32"), "wb") as f:
        for b in blobs:
            f.write(b.tobytes())
    import transformers
    meta = {"reference": f"transformers {transformers.__version__}, torch {torch.__version__}, BertModel float32",
            "model": "sentence-transformers/all-MiniLM-L6-v2", "hidden_size": model.config.hidden_size,
            "max_length": args.max_length, "layout": "per input: hidden[len*hidden], pooler[hidden], "
            "mean[hidden], mean_normalized[hidden]; offsets in floats", "inputs": manifest}
    with open(os.path.join(args.out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=0)
    lengths = sorted(len(m["input_ids"]) for m in manifest)
    print(f"{len(manifest)} inputs, lengths {lengths[0]}..{lengths[-1]}, {sum(lengths)} tokens, "
          f"{cursor * 4 / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
