#!/usr/bin/env python3
"""Regenerate the training goldens (tests/data/training/) with Hugging Face transformers.

Two goldens are written:

tiny/ and tiny/mse/
    A tiny BertForSequenceClassification (vocab 50, hidden 8, 3 layers, 2 heads, intermediate
    16, 16 positions) with weights re-drawn so gradients are well conditioned, saved in float32
    (model/config.json + model/model.safetensors) and reloaded in float64 for every
    computation. A padded batch of 3 sequences (lengths 1, 4, 7) gives the loss, the logits
    and the gradient of every parameter, in float64 (grads.f64). tiny/ is 3-class
    cross-entropy; tiny/mse/ is the same backbone with one regression output and MSE loss.
    The cross-entropy (and MSE) gradients are checked here by central finite differences.

minilm/
    all-MiniLM-L6-v2 as BertForSequenceClassification (2 labels, classifier re-initialised
    from a seeded generator and stored), float32, on the first 4 rows of SST-2 dev. Records
    the loss, logits, the full gradient of the small tensors and 64 sampled coordinates plus
    the Frobenius norm of every large tensor's gradient, then 3 AdamW steps with linear
    warmup/decay and gradient clipping and the parameters after them (values.f32).

Every forward runs in eval mode (no dropout) with eager attention. Output per golden:
manifest.json (inputs, scalars, and where each tensor starts in the binary file, offsets in
elements) and one little-endian binary file. Deterministic for a given model and data.

    python3 scripts/make_training_goldens.py --model-dir ~/.cache/hashee/all-MiniLM-L6-v2 \
        --elue-dir ../shared/data/elue --out tests/data/training
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from transformers import (BertConfig, BertForSequenceClassification, BertTokenizer,
                          get_linear_schedule_with_warmup)

from make_encoder_goldens import read_tsv  # the one TSV reader of the golden scripts

REFERENCE = f"transformers {transformers.__version__}, torch {torch.__version__}"


class Blob:
    """Concatenates arrays of one dtype into a little-endian binary file; offsets in elements."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.parts, self.cursor = [], 0

    def add(self, array):
        # Copy now: the arrays are often views of torch tensors that later change in place
        # (optimizer steps, gradient clipping).
        a = np.array(array, dtype=self.dtype, copy=True).reshape(-1)
        offset = self.cursor
        self.parts.append(a)
        self.cursor += a.size
        return offset

    def write(self, path):
        with open(path, "wb") as f:
            for a in self.parts:
                f.write(a.tobytes())


def write_manifest(path, meta):
    """JSON with one top-level key per line and one line per element of top-level lists (and
    of lists one level below, e.g. training.steps); everything else compact, to keep the
    goldens small while staying diff-friendly."""
    def dumps(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))

    def render(v, depth):
        if isinstance(v, dict) and depth < 2:
            body = ",\n".join(f"{dumps(k)}:{render(x, depth + 1)}" for k, x in v.items())
            return "{\n" + body + "\n}"
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return "[\n" + ",\n".join(dumps(x) for x in v) + "\n]"
        return dumps(v)

    with open(path, "w", encoding="utf-8") as f:
        f.write(render(meta, 0) + "\n")


def is_no_decay(name):
    return "bias" in name or "LayerNorm" in name


# ----------------------------------------------------------------------------------------------
# Golden 1: tiny model, float64
# ----------------------------------------------------------------------------------------------

TINY_SEED = 1234
TINY_LENGTHS = (1, 4, 7)
TINY_CE_LABELS = [0, 2, 1]
TINY_MSE_TARGETS = [0.5, 3.0, 4.5]
FD_STEP = 1e-6

TINY_INIT = (
    "torch.manual_seed(1234); BertForSequenceClassification(config) (HF init, "
    "initializer_range 0.02); then every parameter is overwritten in float32, in "
    "named_parameters() order, from one torch.Generator().manual_seed(1234): "
    "names containing 'LayerNorm' ending in '.weight': 1 + 0.1*torch.randn(shape, generator=g); "
    "other names ending in '.weight' (Linear and Embedding weights, incl. row padding_idx 0 of "
    "the word embeddings): 0.5*torch.randn(shape, generator=g); "
    "names ending in '.bias' (Linear biases and LayerNorm biases): 0.1*torch.randn(shape, "
    "generator=g). Saved in float32 with save_pretrained; all computations reload that file "
    "and convert it to float64 with .double().")


def tiny_config(num_labels, problem_type=None):
    cfg = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=3, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=16, type_vocab_size=2,
                     hidden_act="gelu", layer_norm_eps=1e-12, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, classifier_dropout=None,
                     initializer_range=0.02, pad_token_id=0, num_labels=num_labels)
    if problem_type is not None:
        cfg.problem_type = problem_type
    return cfg


def build_tiny(model_dir, num_labels, problem_type):
    """Builds, re-draws (see TINY_INIT) and saves the tiny model in float32; returns the float64
    model reloaded from disk so the C++ side that loads the file sees the same weights."""
    torch.manual_seed(TINY_SEED)
    model = BertForSequenceClassification(tiny_config(num_labels, problem_type))
    g = torch.Generator().manual_seed(TINY_SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith(".weight") and "LayerNorm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".weight"):
                p.copy_(0.5 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                raise ValueError(f"unexpected parameter {name}")
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir, safe_serialization=True)
    reloaded = BertForSequenceClassification.from_pretrained(
        model_dir, attn_implementation="eager", dtype=torch.float32)
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), reloaded.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), f"reload mismatch at {n1}"
    return reloaded.double().eval()


def tiny_inputs():
    rs = np.random.RandomState(7)
    seqs = []
    for n in TINY_LENGTHS:
        ids = rs.randint(3, 50, size=n).tolist()
        ids[0] = 2  # [CLS]-like
        seqs.append(ids)
    width = max(TINY_LENGTHS)
    input_ids = torch.zeros(len(seqs), width, dtype=torch.long)       # pad id 0
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return seqs, input_ids, mask


def finite_difference_check(model, loss_fn, targets):
    """Central differences (h = FD_STEP) on a few coordinates of the listed tensors; picks,
    per tensor, coordinates whose analytic gradient is not tiny so relative error is
    meaningful."""
    params = dict(model.named_parameters())
    rs = np.random.RandomState(3)
    rows = []
    for name, restrict in targets:
        p = params[name]
        g = p.grad.detach().reshape(-1)
        candidates = torch.arange(g.numel())
        if restrict is not None:      # e.g. a single embedding row
            candidates = restrict
        good = [int(i) for i in candidates if abs(float(g[i])) > 1e-3]
        if not good:
            good = [int(candidates[torch.argmax(g[candidates].abs())])]
        picks = rs.choice(good, size=min(2, len(good)), replace=False)
        for flat in sorted(int(i) for i in picks):
            flat_view = p.data.view(-1)
            orig = flat_view[flat].item()
            with torch.no_grad():
                flat_view[flat] = orig + FD_STEP
                lp = loss_fn().item()
                flat_view[flat] = orig - FD_STEP
                lm = loss_fn().item()
                flat_view[flat] = orig
            fd = (lp - lm) / (2 * FD_STEP)
            an = float(g[flat])
            rel = abs(fd - an) / max(abs(an), abs(fd), 1e-300)
            rows.append({"name": name, "flat_index": flat, "analytic": an, "finite_difference": fd,
                         "abs_error": abs(fd - an), "rel_error": rel})
    return rows


def make_tiny_case(out_dir, num_labels, problem_type, labels, label_dtype, fd_targets_fn):
    model = build_tiny(os.path.join(out_dir, "model"), num_labels, problem_type)
    seqs, input_ids, mask = tiny_inputs()
    token_type_ids = torch.zeros_like(input_ids)
    label_t = torch.tensor(labels, dtype=label_dtype)

    def forward():
        return model(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids,
                     labels=label_t)

    model.zero_grad(set_to_none=True)
    out = forward()
    out.loss.backward()

    blob = Blob("f8")
    tensors = []
    for name, p in model.named_parameters():
        g = p.grad.detach().numpy()
        tensors.append({"name": name, "shape": list(g.shape), "offset": blob.add(g),
                        "count": int(g.size)})

    fd_rows = finite_difference_check(model, lambda: forward().loss, fd_targets_fn(seqs))
    max_rel = max(r["rel_error"] for r in fd_rows)
    max_abs = max(r["abs_error"] for r in fd_rows)
    loss_desc = ("CrossEntropyLoss (mean over the batch) of logits [3, num_labels] vs int64 labels"
                 if problem_type != "regression" else
                 "MSELoss (mean) of logits.squeeze() [3] vs float64 targets")
    meta = {
        "reference": f"{REFERENCE}, BertForSequenceClassification float64 (eval, eager "
                     "attention, padded batch with attention_mask)",
        "config": {k: v for k, v in tiny_config(num_labels, problem_type).to_dict().items()
                   if k in ("vocab_size", "hidden_size", "num_hidden_layers",
                            "num_attention_heads", "intermediate_size", "max_position_embeddings",
                            "type_vocab_size", "hidden_act", "layer_norm_eps", "num_labels",
                            "problem_type", "pad_token_id")} | {"num_labels": num_labels},
        "model_dir": "model (float32 safetensors, load and widen to float64)",
        "init": TINY_INIT,
        "input_ids": seqs,
        "lengths": [len(s) for s in seqs],
        "inputs_note": "ids: numpy RandomState(7).randint(3, 50, size=len) per sequence in "
                       "order, first id set to 2; token_type_ids all 0; positions 0..len-1; "
                       "batched padded to 7 with id 0 and attention_mask 1 on real tokens",
        "padded_input_ids": input_ids.tolist(),
        "attention_mask": mask.tolist(),
        ("labels" if problem_type != "regression" else "targets"): labels,
        "loss_function": loss_desc,
        "loss": out.loss.item(),
        "logits": out.logits.detach().tolist(),
        "binary": "grads.f64",
        "layout": "grads.f64: little-endian float64; per tensor (named_parameters order) its "
                  "full gradient, row-major, at 'offset' elements from the start",
        "tensors": tensors,
        "fd_check": {"step": FD_STEP, "scheme": "central (L(x+h) - L(x-h)) / 2h in float64",
                     "rel_error": "|fd - analytic| / max(|fd|, |analytic|)",
                     "note": "attention key-bias gradients are exactly 0 in exact arithmetic "
                             "(softmax shift invariance); the stored values are round-off",
                     "max_rel_error": max_rel, "max_abs_error": max_abs, "points": fd_rows},
    }
    blob.write(os.path.join(out_dir, "grads.f64"))
    write_manifest(os.path.join(out_dir, "manifest.json"), meta)
    print(f"{out_dir}: loss {out.loss.item():.12g}, {blob.cursor} gradient values, FD on "
          f"{len(fd_rows)} coords: max rel {max_rel:.3g}, max abs {max_abs:.3g}")
    for r in fd_rows:
        print(f"    {r['name']}[{r['flat_index']}]: analytic {r['analytic']:+.12e} "
              f"fd {r['finite_difference']:+.12e} rel {r['rel_error']:.2e}")
    return max_rel


def tiny_fd_targets():
    def targets(seqs):
        hidden = 8
        word = seqs[1][1]                                   # an id that occurs
        word_row = torch.arange(word * hidden, (word + 1) * hidden)
        pos_rows = torch.arange(0, 7 * hidden)              # positions actually used
        type_row = torch.arange(0, hidden)                  # token type 0
        return [
            ("bert.embeddings.word_embeddings.weight", word_row),
            ("bert.embeddings.position_embeddings.weight", pos_rows),
            ("bert.embeddings.token_type_embeddings.weight", type_row),
            ("bert.embeddings.LayerNorm.weight", None),
            ("bert.encoder.layer.0.attention.self.query.weight", None),
            # (key biases are not checked: their exact gradient is 0, since adding the same
            # q.b_k to every score of a query row leaves the softmax unchanged)
            ("bert.encoder.layer.1.attention.self.value.bias", None),
            ("bert.encoder.layer.1.attention.output.LayerNorm.weight", None),
            ("bert.encoder.layer.2.intermediate.dense.weight", None),
            ("bert.encoder.layer.2.output.LayerNorm.bias", None),
            ("bert.pooler.dense.weight", None),
            ("classifier.weight", None),
            ("classifier.bias", None),
        ]
    return targets


# ----------------------------------------------------------------------------------------------
# Golden 2: all-MiniLM-L6-v2, float32, gradients and 3 AdamW steps
# ----------------------------------------------------------------------------------------------

MINILM_ROWS = 4
MINILM_SAMPLES = 64
LR, BETAS, EPS, WD = 5e-5, (0.9, 0.999), 1e-8, 0.01
WARMUP, TOTAL_STEPS, MAX_NORM = 1, 3, 1.0

ADAMW_FORMULA = (
    "torch.optim.AdamW single-tensor path (foreach=False, amsgrad=False, maximize=False), all in "
    "float32, per parameter with gradient g (already clipped) at step t = 1, 2, 3 and group "
    "weight decay wd (0.0 for names containing 'bias' or 'LayerNorm', 0.01 otherwise): "
    "p = p * (1 - lr*wd)  [decoupled decay first, with the current lr]; "
    "m = m + (1 - beta1) * (g - m)  [lerp, i.e. beta1*m + (1-beta1)*g]; "
    "v = beta2*v + (1 - beta2)*g*g; "
    "bc1 = 1 - beta1^t; bc2 = 1 - beta2^t; step_size = lr / bc1; "
    "denom = sqrt(v) / sqrt(bc2) + eps  [eps added after the bias correction of v]; "
    "p = p - step_size * m / denom. m and v start at zero; the step with lr 0 still updates "
    "m, v and t.")
CLIP_FORMULA = (
    "torch.nn.utils.clip_grad_norm_(params, max_norm=1.0) before each step: "
    "total = ||(||g_1||_2, ..., ||g_n||_2)||_2 over all parameters (float32); "
    "coef = min(max_norm / (total + 1e-6), 1.0); every g *= coef (applied even when coef == 1). "
    "grad_norm_preclip is 'total'.")
SCHEDULE_FORMULA = (
    "get_linear_schedule_with_warmup(num_warmup_steps=1, num_training_steps=3): the lr used by "
    "the optimizer step k (k = 0, 1, 2) is base_lr * (k / warmup if k < warmup else "
    "max(0, (total - k) / max(1, total - warmup))), i.e. 0, 5e-5, 2.5e-5; scheduler.step() "
    "after optimizer.step().")


def is_small(name, p):
    """Small tensors are stored in full: 1-D tensors (biases, LayerNorm) and the classifier."""
    return p.dim() == 1 or name.startswith("classifier.")


def make_minilm(args, out_dir):
    tok = BertTokenizer.from_pretrained(args.model_dir)
    model = BertForSequenceClassification.from_pretrained(
        args.model_dir, num_labels=2, attn_implementation="eager", dtype=torch.float32).eval()
    # Deterministic classifier (the checkpoint has none).
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        w = torch.randn(model.classifier.weight.shape, generator=g, dtype=torch.float32) * 0.02
        model.classifier.weight.copy_(w)
        model.classifier.bias.zero_()

    rows = read_tsv(os.path.join(args.elue_dir, "SST-2", "dev.tsv"), ["sentence", "label"])
    rows = rows[:MINILM_ROWS]
    sentences = [r[0] for r in rows]
    labels = [int(r[1]) for r in rows]
    enc = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    label_t = torch.tensor(labels, dtype=torch.long)
    inputs = []
    for i, s in enumerate(sentences):
        n = int(enc["attention_mask"][i].sum())
        inputs.append({"sentence": s, "label": labels[i],
                       "input_ids": enc["input_ids"][i, :n].tolist(),
                       "token_type_ids": enc["token_type_ids"][i, :n].tolist()})

    blob = Blob("f4")
    named = list(model.named_parameters())

    # Sampled coordinates of the large tensors: one RandomState(0) stream, in
    # named_parameters() order, 64 distinct flat indices per tensor, sorted.
    rs = np.random.RandomState(0)
    sampled = {}
    for name, p in named:
        if not is_small(name, p):
            idx = rs.choice(p.numel(), size=MINILM_SAMPLES, replace=False)
            sampled[name] = np.sort(idx).astype(np.int64)

    # One table row per parameter; values are appended for the gradients first (grad_offset)
    # and for the parameters after the 3 steps later (after_offset).
    # (count is implicit: len(indices) for sampled rows, the product of shape otherwise).
    table = [{"name": n, "shape": list(p.shape)} for n, p in named]

    def record(tensors_by_name, key):
        """Stores every small tensor in full and the sampled coordinates of the large ones."""
        for row in table:
            t = tensors_by_name[row["name"]].detach().float()
            if row["name"] in sampled:
                vals = t.reshape(-1)[torch.from_numpy(sampled[row["name"]])].numpy()
            else:
                vals = t.numpy()
            row[key] = blob.add(vals)

    classifier_offset = blob.add(model.classifier.weight.detach().numpy())

    decay = [p for n, p in named if not is_no_decay(n)]
    no_decay = [p for n, p in named if is_no_decay(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=WARMUP,
                                            num_training_steps=TOTAL_STEPS)

    steps, loss0, logits0 = [], None, None
    for step in range(TOTAL_STEPS):
        opt.zero_grad(set_to_none=True)
        out = model(**enc, labels=label_t)
        out.loss.backward()
        if step == 0:
            # The gradient golden is the first step's gradient, before clipping.
            loss0, logits0 = out.loss.item(), out.logits.detach().tolist()
            record({n: p.grad for n, p in named}, "grad_offset")
            for row in table:
                if row["name"] in sampled:
                    g = dict(named)[row["name"]].grad
                    row["grad_frobenius_norm"] = torch.linalg.vector_norm(g.double()).item()
                    row["indices"] = sampled[row["name"]].tolist()
        lr = sched.get_last_lr()[0]
        total = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_NORM)
        opt.step()
        sched.step()
        steps.append({"step": step + 1, "loss": out.loss.item(), "lr": lr,
                      "grad_norm_preclip": total.item()})
        print(f"minilm step {step + 1}: loss {out.loss.item():.9g} lr {lr:.3g} "
              f"grad norm {total.item():.9g}")

    record({n: p for n, p in named}, "after_offset")

    meta = {
        "reference": f"{REFERENCE}, BertForSequenceClassification float32 (eval: no dropout, "
                     "eager attention, padded batch with attention_mask)",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (BertModel checkpoint) + new classifier",
        "num_labels": 2,
        "max_length": 128,
        "classifier_init": {"weight": {"shape": list(model.classifier.weight.shape),
                                       "offset": classifier_offset,
                                       "count": model.classifier.weight.numel()},
                            "bias": "zeros",
                            "note": "g = torch.Generator().manual_seed(0); weight = "
                                    "torch.randn([2, 384], generator=g) * 0.02 (float32)"},
        "data": "first 4 rows of SST-2 dev.tsv; BertTokenizer from the model dir "
                "(lowercase), truncation at 128, padded to the longest with attention_mask",
        "inputs": inputs,
        "labels": labels,
        "loss_function": "CrossEntropyLoss, mean over the batch",
        "loss": loss0,
        "logits": logits0,
        "binary": "values.f32",
        "layout": "values.f32: little-endian float32; offsets and counts in elements. Per "
                  "tensors[] row: the gradient (first step, before clipping) at grad_offset and "
                  "the parameter after the 3 steps at after_offset. Rows without 'indices' "
                  "(small tensors) hold the whole tensor row-major (prod(shape) values); rows "
                  "with 'indices' (large tensors) hold the values at those flat row-major "
                  "int64 indices, in that order (64 values), and grad_frobenius_norm, the "
                  "float64 norm of the whole float32 gradient",
        "sampling": "numpy RandomState(0), for each large tensor in named_parameters() order: "
                    "choice(numel, 64, replace=False), then sorted",
        "small_tensors": "1-D tensors (all biases and LayerNorm weights/biases) and classifier.*",
        "tensors": table,
        "training": {
            "optimizer": {"name": "AdamW", "lr": LR, "betas": list(BETAS), "eps": EPS,
                          "weight_decay": WD,
                          "groups": "weight_decay 0.01 for names without 'bias' or 'LayerNorm', "
                                    "0.0 for names containing either"},
            "adamw_formula": ADAMW_FORMULA,
            "clip_formula": CLIP_FORMULA,
            "schedule": SCHEDULE_FORMULA,
            "procedure": "start from the weights above; for each of 3 steps: zero_grad, forward "
                         "on the same 4 examples, CE loss, backward, clip_grad_norm_, "
                         "optimizer.step(), scheduler.step()",
            "steps": steps,
        },
    }
    os.makedirs(out_dir, exist_ok=True)
    blob.write(os.path.join(out_dir, "values.f32"))
    write_manifest(os.path.join(out_dir, "manifest.json"), meta)
    print(f"{out_dir}: loss {loss0:.9g}, {blob.cursor} float32 values, "
          f"{len(sampled)} sampled tensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--elue-dir", required=True)
    ap.add_argument("--out", required=True, help="parent directory, e.g. tests/data/training")
    ap.add_argument("--only", choices=("tiny", "minilm"), help="generate one golden only")
    args = ap.parse_args()
    args.model_dir = os.path.expanduser(args.model_dir)

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    if args.only in (None, "tiny"):
        tiny = os.path.join(args.out, "tiny")
        ce_rel = make_tiny_case(tiny, 3, None, TINY_CE_LABELS, torch.long, tiny_fd_targets())
        mse_rel = make_tiny_case(os.path.join(tiny, "mse"), 1, "regression", TINY_MSE_TARGETS,
                                 torch.float64, tiny_fd_targets())
        assert ce_rel < 1e-6 and mse_rel < 1e-6, "finite-difference check failed"
    if args.only in (None, "minilm"):
        make_minilm(args, os.path.join(args.out, "minilm"))


if __name__ == "__main__":
    main()
