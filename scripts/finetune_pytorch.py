#!/usr/bin/env python3
"""The `hashee finetune` recipe in PyTorch (transformers), the reference for quality and speed.

The same data (the ELUE TSV files, the same columns, truncation at --max-length), the same new
classifier (hashee's portable random source: mt19937_64 seeded with --seed, Box-Muller normals
* 0.02, zero bias), the same data order (each epoch shuffled by mt19937_64 seeded with
stream_seed(seed, epoch), Fisher-Yates with rejection sampling, exactly as hashee's
detail::random_source), AdamW (0.9, 0.999, 1e-8; decay 0.01 except biases and LayerNorm),
linear warm-up over ceil(0.1 * steps) then linear decay, clipping at 1.0, dropout from the
model's config. Dropout masks differ (torch's generator, seeded with --seed). The dev metric
after every epoch; the best is reported. Prints one JSON object:

    python3 scripts/finetune_pytorch.py --model ~/.cache/hashee/all-MiniLM-L6-v2 \\
        --elue ../shared/data/elue --task sst2 --epochs 3 --seed 0 --threads 2
"""
import argparse
import csv
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup

TASKS = {  # directory, text columns, label column, default objective, metric
    "sst2": ("SST-2", ["sentence"], "label", "classify", "accuracy"),
    "mrpc": ("MRPC", ["#1 String", "#2 String"], "Quality", "classify", "accuracy_f1"),
    "stsb": ("STS-B", ["sentence1", "sentence2"], "label", "regress", "pearson_spearman"),
}
M64 = (1 << 64) - 1


class MT19937_64:
    """std::mt19937_64."""

    def __init__(self, seed):
        self.mt = [0] * 312
        self.mt[0] = seed & M64
        for i in range(1, 312):
            self.mt[i] = (6364136223846793005 * (self.mt[i - 1] ^ (self.mt[i - 1] >> 62)) + i) & M64
        self.index = 312

    def __call__(self):
        if self.index >= 312:
            for i in range(312):
                x = (self.mt[i] & 0xFFFFFFFF80000000) | (self.mt[(i + 1) % 312] & 0x7FFFFFFF)
                xa = x >> 1
                if x & 1:
                    xa ^= 0xB5026F5AA96619E9
                self.mt[i] = self.mt[(i + 156) % 312] ^ xa
            self.index = 0
        y = self.mt[self.index]
        self.index += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & M64


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def stream_seed(seed, k):
    return splitmix64(seed ^ splitmix64(k))


class RandomSource:
    """hashee::detail::random_source."""

    def __init__(self, seed):
        self.engine = MT19937_64(seed)

    def below(self, n):
        limit = M64 - M64 % n
        while True:
            v = self.engine()
            if v < limit:
                return v % n

    def uniform(self):
        return (self.engine() >> 11) * 2.0 ** -53

    def normal(self, mean=0.0, sigma=1.0):
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        return mean + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)

    def shuffle(self, v):
        for i in range(len(v), 1, -1):
            j = self.below(i)
            v[i - 1], v[j] = v[j], v[i - 1]


def read_split(path, columns, label, limit):
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if limit:
        rows = rows[:limit]
    return [[r[c] for c in columns] for r in rows], [float(r[label]) for r in rows]


def pearson(x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def average_ranks(x):
    """1-based ranks, ties given their mean rank (scipy's rankdata 'average')."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def metric(name, outputs, truth):
    if name == "pearson_spearman":
        return (pearson(outputs, truth) + pearson(average_ranks(outputs), average_ranks(truth))) / 2
    pred = np.argmax(np.array(outputs), axis=1)
    gold = np.array(truth).astype(int)
    acc = float((pred == gold).mean())
    if name == "accuracy":
        return acc
    tp = int(((pred == 1) & (gold == 1)).sum())
    fp = int(((pred == 1) & (gold == 0)).sum())
    fn = int(((pred == 0) & (gold == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return (acc + f1) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--elue", default=os.environ.get("HASHEE_ELUE_DIR", "../shared/data/elue"))
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--objective", choices=["classify", "regress", "cosine"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0, help="the first N training examples")
    ap.add_argument("--dev-limit", type=int, default=0)
    ap.add_argument("--no-dev", action="store_true", help="skip the dev evaluation (speed runs)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder, columns, label, objective, metric_name = TASKS[args.task]
    objective = args.objective or objective
    if objective != "classify" and args.task != "mrpc":
        metric_name = "pearson_spearman"
    train_x, train_y = read_split(os.path.join(args.elue, folder, "train.tsv"), columns, label, args.limit)
    dev_x, dev_y = read_split(os.path.join(args.elue, folder, "dev.tsv"), columns, label, args.dev_limit)
    tok = AutoTokenizer.from_pretrained(args.model)
    config = transformers.AutoConfig.from_pretrained(args.model)

    if objective == "cosine":
        model = AutoModel.from_pretrained(args.model, add_pooling_layer=False, attn_implementation="eager")
        train_y = [y / 5.0 for y in train_y]
    else:
        labels = 1 if objective == "regress" else max(2, int(max(train_y)) + 1)
        model = BertForSequenceClassification.from_pretrained(
            args.model, num_labels=labels, attn_implementation="eager",
            problem_type="regression" if labels == 1 else "single_label_classification")
        rng = RandomSource(args.seed)
        w = [rng.normal(0.0, config.initializer_range) for _ in range(labels * config.hidden_size)]
        with torch.no_grad():
            model.classifier.weight.copy_(torch.tensor(np.array(w, dtype=np.float32).reshape(labels, config.hidden_size)))
            model.classifier.bias.zero_()

    named = list(model.named_parameters())
    decay = [p for n, p in named if "bias" not in n and "LayerNorm" not in n]
    no_decay = [p for n, p in named if "bias" in n or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = max(1, math.ceil(len(train_x) / args.batch_size))
    total = steps_per_epoch * args.epochs
    sched = get_linear_schedule_with_warmup(opt, min(total, math.ceil(0.1 * total)), total)

    def encode(texts):
        if objective == "cosine":
            a = tok([t[0] for t in texts], padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
            b = tok([t[1] for t in texts], padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
            return a, b
        firsts = [t[0] for t in texts]
        seconds = [t[1] for t in texts] if len(texts[0]) == 2 else None
        return tok(firsts, seconds, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")

    def mean_pool(enc):
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return (h * m).sum(1) / m.sum(1)

    def outputs_of(texts):
        enc = encode(texts)
        if objective == "cosine":
            return torch.nn.functional.cosine_similarity(mean_pool(enc[0]), mean_pool(enc[1]), dim=1, eps=1e-8)
        return model(**enc).logits

    def evaluate():
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(dev_x), 64):
                o = outputs_of(dev_x[i:i + 64])
                out.extend(o.squeeze(-1).tolist() if objective != "classify" else o.tolist())
        model.train()
        return metric(metric_name, out, dev_y)

    history, trained, train_seconds = [], 0, 0.0
    model.train()
    for epoch in range(args.epochs):
        order = list(range(len(train_x)))
        RandomSource(stream_seed(args.seed, epoch)).shuffle(order)
        losses = []
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            idx = order[s * args.batch_size:(s + 1) * args.batch_size]
            texts = [train_x[i] for i in idx]
            target = torch.tensor([train_y[i] for i in idx])
            opt.zero_grad(set_to_none=True)
            out = outputs_of(texts)
            if objective == "cosine":
                loss = torch.nn.functional.mse_loss(out, target.float())
            elif objective == "regress":
                loss = torch.nn.functional.mse_loss(out.squeeze(-1), target.float())
            else:
                loss = torch.nn.functional.cross_entropy(out, target.long())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            trained += len(idx)
        train_seconds += time.perf_counter() - t0
        row = {"epoch": epoch + 1, "train_loss": sum(losses) / len(losses), "seconds": time.perf_counter() - t0}
        if not args.no_dev:
            row["dev_" + metric_name] = evaluate()
        history.append(row)
        print(json.dumps(row), file=sys.stderr)
    best = max((r.get("dev_" + metric_name, float("nan")) for r in history), default=float("nan"))
    print(json.dumps({"task": args.task, "objective": objective, "metric": metric_name, "seed": args.seed,
                      "epochs": args.epochs, "history": history, "best": best,
                      "train_examples_per_s": trained / train_seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "torch": torch.__version__, "transformers": transformers.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
