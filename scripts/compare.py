#!/usr/bin/env python3
"""hashee beside ONNX Runtime and PyTorch: the same all-MiniLM-L6-v2, the same machine, one run.

Four contestants embed the same token ids (mask-aware mean of the final token states, the
sentence-transformers pooling before its L2 normalisation), interleaved in one process with the
same thread count:

  ONNX Runtime  the model exported from the same safetensors by PyTorch's exporter, fused by
                onnxruntime.transformers' BERT optimizer, CPU execution provider, all graph
                optimisations (ORT_ENABLE_ALL);
  PyTorch       transformers' BertModel, eval mode, torch.no_grad();
  hashee dense  the encoder over packed batches (libhashee_compare.so, through ctypes);
  hashee HashEE the same encoder with token exits from a frequency-hash table at 2x FLOPs.

ONNX Runtime and PyTorch take batches padded to their longest sequence with an attention mask
(how they are used); hashee takes them packed. Tokenisation is done once, before timing, and
is not counted for anyone. For each input set (the SST-2 dev sentences; fixed 128-token inputs
cut from the same text) and batch size, every contestant makes one untimed pass (its outputs
are compared with PyTorch's at that batch size), then --rounds timed passes, the contestants'
order rotating each round; the report takes each one's median. Peak memory: each contestant
alone in a child process (same inputs, every batch size), its peak resident set size.

Writes a markdown report and an SVG plot (docs/comparison.md, docs/comparison.svg by default).
Run through scripts/compare.sh, which sets everything up.
"""
import argparse
import csv
import ctypes
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ORT, TORCH, DENSE, HASHEE = "ONNX Runtime", "PyTorch", "hashee dense", "hashee HashEE"
CONTESTANTS = [ORT, TORCH, DENSE, HASHEE]
BATCHES = [1, 8, 32]
DENSE_TOLERANCE = 1e-4


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--elue-dir", required=True)
    p.add_argument("--lib", required=True, help="libhashee_compare.so")
    p.add_argument("--table", required=True, help="HashEE exit table (hashee hash build)")
    p.add_argument("--work-dir", required=True, help="where the ONNX files and the inputs go")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fixed-inputs", type=int, default=192, help="how many 128-token inputs")
    p.add_argument("--limit", type=int, default=0, help="time only the first N SST-2 dev sentences (0: all; a quick check)")
    p.add_argument("--out-md", default="docs/comparison.md")
    p.add_argument("--out-svg", default="docs/comparison.svg")
    p.add_argument("--memory-child", choices=CONTESTANTS, help=argparse.SUPPRESS)
    return p.parse_args()


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib():
    """This process's peak resident set size (VmHWM: unlike getrusage's ru_maxrss, not carried
    over from the parent that forked it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# ---------------------------------------------------------------------------------------------
# Inputs


def read_sentences(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or "sentence" not in rows[0]:
        sys.exit(f"compare: {path}: no 'sentence' column in the header line")
    col = rows[0].index("sentence")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            sys.exit(f"compare: {path}:{line}: {len(row)} fields, the header has {len(rows[0])}")
    return [row[col] for row in rows[1:]]


def make_inputs(args):
    """Token id sequences: the SST-2 dev sentences, and fixed 128-token inputs cut from their text."""
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(args.model_dir)
    sentences = read_sentences(os.path.join(args.elue_dir, "SST-2", "dev.tsv"))
    sst2 = [tok(s, truncation=True, max_length=256)["input_ids"] for s in sentences]
    stream = [i for s in sst2 for i in s[1:-1]]
    body = 126
    fixed = [[tok.cls_token_id] + stream[k : k + body] + [tok.sep_token_id]
             for k in range(0, len(stream) - body + 1, body)][: args.fixed_inputs]
    if len(fixed) < args.fixed_inputs:
        sys.exit(f"compare: the SST-2 dev text makes {len(fixed)} inputs of 128 tokens, fewer than --fixed-inputs")
    return {"SST-2 dev": sst2[: args.limit] if args.limit else sst2, "128 tokens": fixed}


def batches_of(seqs, size):
    return [seqs[i : i + size] for i in range(0, len(seqs), size)]


def padded(batch):
    import numpy as np

    longest = max(len(s) for s in batch)
    ids = np.zeros((len(batch), longest), dtype=np.int64)
    mask = np.zeros((len(batch), longest), dtype=np.int64)
    for r, s in enumerate(batch):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1
    return ids, mask, np.zeros_like(ids)


# ---------------------------------------------------------------------------------------------
# Contestants: prepare(batch) -> runnable input (untimed), run(prepared) -> [batch, hidden] float32


def mean_pool_module():
    import torch

    class MeanPooledBert(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)

    return MeanPooledBert


def load_bert(model_dir):
    from transformers import BertModel

    return BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()


class TorchContestant:
    name = TORCH

    def __init__(self, args):
        import torch

        self.torch = torch
        self.model = mean_pool_module()(load_bert(args.model_dir)).eval()

    def prepare(self, batch):
        return tuple(self.torch.from_numpy(a) for a in padded(batch))

    def run(self, prepared):
        with self.torch.no_grad():
            return self.model(*prepared).numpy()


def export_onnx(args):
    """model.onnx (PyTorch's exporter, from the same safetensors) and model-opt.onnx (fused)."""
    import torch
    from onnxruntime.transformers import optimizer

    raw = os.path.join(args.work_dir, "model.onnx")
    opt = os.path.join(args.work_dir, "model-opt.onnx")
    stamp = os.path.join(args.work_dir, "model-opt.source")
    source = json.dumps({"model": os.path.realpath(os.path.join(args.model_dir, "model.safetensors")),
                         "mtime": os.path.getmtime(os.path.join(args.model_dir, "model.safetensors")),
                         "torch": torch.__version__})
    if os.path.exists(opt) and os.path.exists(stamp) and open(stamp).read() == source:
        return opt
    module = mean_pool_module()(load_bert(args.model_dir)).eval()
    example = tuple(torch.from_numpy(a) for a in padded([[101, 7592, 2088, 102], [101, 2088, 102]]))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "token_type_ids": {0: "batch", 1: "sequence"}, "embedding": {0: "batch"}}
    torch.onnx.export(module, example, raw, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["embedding"], dynamic_axes=axes, opset_version=17, dynamo=False)
    config = json.load(open(os.path.join(args.model_dir, "config.json")))
    fused = optimizer.optimize_model(raw, model_type="bert", num_heads=config["num_attention_heads"],
                                     hidden_size=config["hidden_size"], opt_level=0)
    fused.save_model_to_file(opt)
    with open(stamp, "w") as f:
        f.write(source)
    return opt


class OrtContestant:
    name = ORT

    def __init__(self, args, path):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def prepare(self, batch):
        ids, mask, types = padded(batch)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    def run(self, prepared):
        return self.session.run(["embedding"], prepared)[0]


class HasheeContestant:
    def __init__(self, args, table):
        import numpy as np

        self.np = np
        self.name = HASHEE if table else DENSE
        lib = ctypes.CDLL(os.path.abspath(args.lib))
        lib.hc_open.restype = ctypes.c_void_p
        lib.hc_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        lib.hc_embed.restype = ctypes.c_int
        lib.hc_embed.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.hc_hidden_size.argtypes = [ctypes.c_void_p]
        lib.hc_close.argtypes = [ctypes.c_void_p]
        self.lib = lib
        self.err = ctypes.create_string_buffer(4096)
        self.handle = lib.hc_open(args.model_dir.encode(), table.encode() if table else None, args.threads,
                                  self.err, len(self.err))
        if not self.handle:
            raise RuntimeError(f"hashee: {self.err.value.decode()}")
        self.hidden = lib.hc_hidden_size(self.handle)
        self.flops = np.zeros(2)  # dense FLOPs, FLOPs that ran, summed over every call

    def prepare(self, batch):
        np = self.np
        ids = np.ascontiguousarray(np.concatenate([np.asarray(s, dtype=np.int32) for s in batch]))
        lengths = np.asarray([len(s) for s in batch], dtype=np.int32)
        return ids, lengths, np.zeros((len(batch), self.hidden), dtype=np.float32), np.zeros(2)

    def run(self, prepared):
        ids, lengths, out, flops = prepared
        status = self.lib.hc_embed(self.handle, ids.ctypes.data, lengths.ctypes.data, len(lengths), out.ctypes.data,
                                   flops.ctypes.data, self.err, len(self.err))
        if status:
            raise RuntimeError(f"hashee: {self.err.value.decode()}")
        self.flops += flops
        return out

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.hc_close(self.handle)


def make_contestant(name, args, onnx_path):
    if name == ORT:
        return OrtContestant(args, onnx_path)
    if name == TORCH:
        return TorchContestant(args)
    return HasheeContestant(args, args.table if name == HASHEE else None)


def set_threads(threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


# ---------------------------------------------------------------------------------------------
# Measurement


def memory_child(args):
    """One contestant alone: load, run every input set at every batch size; print its peak RSS."""
    import numpy as np

    if args.memory_child == TORCH:
        set_threads(args.threads)
    data = np.load(os.path.join(args.work_dir, "inputs.npz"))
    inputs = {name: np.split(data[f"{key}_ids"], np.cumsum(data[f"{key}_lengths"])[:-1])
              for name, key in (("SST-2 dev", "sst2"), ("128 tokens", "fixed"))}
    if args.memory_child == ORT:
        import onnxruntime  # noqa: F401  (imports first, to report them apart from the model and its run)
    elif args.memory_child == TORCH:
        import transformers  # noqa: F401
    after_imports = rss_mib()
    c = make_contestant(args.memory_child, args, os.path.join(args.work_dir, "model-opt.onnx"))
    for seqs in inputs.values():
        for size in BATCHES:
            for b in batches_of([list(s) for s in seqs], size):
                c.run(c.prepare(b))
    print(json.dumps({"after_imports_mib": after_imports, "peak_mib": peak_rss_mib()}))


def measure_memory(args):
    out = {}
    for name in CONTESTANTS:
        cmd = [sys.executable, __file__, "--memory-child", name] + sys.argv[1:]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"compare: memory run of {name} failed:\n{r.stderr}")
        out[name] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {name}: peak RSS {out[name]['peak_mib']:.1f} MiB", flush=True)
    return out


def measure(args, inputs, contestants):
    import numpy as np

    rows = []
    for input_name, seqs in inputs.items():
        for size in BATCHES:
            batches = batches_of(seqs, size)
            prepared = {c.name: [c.prepare(b) for b in batches] for c in contestants}
            outputs = {}
            flops = {}
            for c in contestants:  # untimed pass: warm-up and the outputs
                if hasattr(c, "flops"):
                    c.flops[:] = 0
                outputs[c.name] = [c.run(p).copy() for p in prepared[c.name]]
                if hasattr(c, "flops"):
                    flops[c.name] = c.flops[0] / c.flops[1]
            times = {c.name: [] for c in contestants}
            for r in range(args.rounds):
                for k in range(len(contestants)):
                    c = contestants[(k + r) % len(contestants)]
                    t0 = time.perf_counter()
                    for p in prepared[c.name]:
                        c.run(p)
                    times[c.name].append(time.perf_counter() - t0)
            ref = np.concatenate(outputs[TORCH])
            ort_rate = len(seqs) / statistics.median(times[ORT])
            for c in contestants:
                rate = len(seqs) / statistics.median(times[c.name])
                got = np.concatenate(outputs[c.name])
                diff = float(np.max(np.abs(got - ref)))
                cosine = float(np.mean(np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))))
                rows.append({"input": input_name, "batch": size, "contestant": c.name, "sentences_per_s": rate,
                             "vs_ort": rate / ort_rate, "max_abs_diff": diff, "mean_cosine": cosine, "flops_speedup": flops.get(c.name),
                             "times_s": times[c.name]})
                print(f"  {input_name:10} batch {size:2} {c.name:13} {rate:8.1f} sentences/s  {rate / ort_rate:5.2f}x ORT"
                      f"  max|diff| {diff:.2e}" + (f"  FLOPs {flops[c.name]:.2f}x" if c.name in flops else ""),
                      flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Report


def write_svg(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inputs = list(dict.fromkeys(r["input"] for r in rows))
    fig, axes = plt.subplots(1, len(inputs), figsize=(11, 4.2))
    colours = {ORT: "#7f7f7f", TORCH: "#d62728", DENSE: "#1f77b4", HASHEE: "#2ca02c"}
    width = 0.2
    for ax, name in zip(axes, inputs):
        for k, c in enumerate(CONTESTANTS):
            vals = [next(r for r in rows if r["input"] == name and r["batch"] == b and r["contestant"] == c)
                    for b in BATCHES]
            xs = [i + (k - 1.5) * width for i in range(len(BATCHES))]
            ax.bar(xs, [v["sentences_per_s"] for v in vals], width, label=c, color=colours[c])
            for x, v in zip(xs, vals):
                ax.text(x, v["sentences_per_s"], f"{v['vs_ort']:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(BATCHES)), [f"batch {b}" for b in BATCHES])
        ax.set_title(name)
        ax.set_ylabel("sentences/s")
    axes[0].legend(fontsize=8)
    fig.suptitle("all-MiniLM-L6-v2, 2 threads: sentences/s (labels: ratio to ONNX Runtime)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def write_markdown(args, rows, memory, versions, path, svg_path, inputs):
    lines = [
        "# hashee beside ONNX Runtime and PyTorch",
        "",
        "Generated by `bash scripts/compare.sh` (scripts/compare.py); do not edit by hand.",
        "",
        f"Run of {versions['date']} on {versions['cpu']}, {args.threads} threads for every contestant, "
        f"{args.rounds} interleaved rounds (median). Python {versions['python']}, ONNX Runtime {versions['onnxruntime']}, "
        f"PyTorch {versions['torch']}, transformers {versions['transformers']}.",
        "",
        "Model: all-MiniLM-L6-v2, the same `model.safetensors` for everyone (ONNX Runtime runs it as "
        "exported by PyTorch's exporter and fused by onnxruntime.transformers' BERT optimizer; CPU "
        "execution provider, `ORT_ENABLE_ALL`). Output compared: each input's mean of its final "
        "token states over its real tokens (sentence-transformers' pooling, before normalisation); "
        "differences are the largest absolute difference from PyTorch's output at the same batch "
        f"size, over every input. Every dense contestant must agree within {DENSE_TOLERANCE:g}.",
        "",
        f"Inputs: the {len(inputs['SST-2 dev'])} SST-2 dev sentences (ELUE), in order, and "
        f"{len(inputs['128 tokens'])} inputs of exactly 128 tokens cut from the same text. ONNX "
        "Runtime and PyTorch get each batch padded to its longest sequence with an attention mask; "
        "hashee gets it packed (no padding). Tokenisation is done once beforehand and counted for "
        "nobody. HashEE: frequency hash, exit table built by `hashee hash build --target 2` on the "
        "SST-2 train sentences, exited tokens kept as keys and values.",
        "",
        "| input | batch | contestant | sentences/s | vs ONNX Runtime | max abs diff from PyTorch | mean cosine to PyTorch | FLOPs speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flops = f"{r['flops_speedup']:.2f}x" if r["flops_speedup"] else ""
        lines.append(f"| {r['input']} | {r['batch']} | {r['contestant']} | {r['sentences_per_s']:.1f} | "
                     f"{r['vs_ort']:.2f}x | {r['max_abs_diff']:.1e} | {r['mean_cosine']:.4f} | {flops} |")
    lines += ["", f"![sentences/s by batch size]({os.path.basename(svg_path)})", "",
              "Peak memory: each contestant alone in a child process running the same inputs at every "
              "batch size; peak resident set size of the process (Python interpreter and libraries "
              "included), and what it held after its imports, before loading the model.", "",
              "| contestant | peak RSS (MiB) | after imports (MiB) | peak above imports (MiB) |", "|---|---|---|---|"]
    for name in CONTESTANTS:
        m = memory[name]
        lines.append(f"| {name} | {m['peak_mib']:.1f} | {m['after_imports_mib']:.1f} | "
                     f"{m['peak_mib'] - m['after_imports_mib']:.1f} |")
    lines += ["", "## Targets (batch 32)", "", "| input | hashee dense vs ONNX Runtime (target 1.0x, goal 1.2x) | "
              "HashEE vs ONNX Runtime (target 1.8x) |", "|---|---|---|"]
    for name in inputs:
        get = lambda c: next(r for r in rows if r["input"] == name and r["batch"] == 32 and r["contestant"] == c)
        lines.append(f"| {name} | {get(DENSE)['vs_ort']:.2f}x | {get(HASHEE)['vs_ort']:.2f}x |")
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    args = parse_args()
    if args.memory_child:
        return memory_child(args)
    set_threads(args.threads)
    import numpy as np
    import onnxruntime
    import torch
    import transformers

    os.makedirs(args.work_dir, exist_ok=True)
    print("compare: inputs", flush=True)
    inputs = make_inputs(args)
    np.savez(os.path.join(args.work_dir, "inputs.npz"),
             **{f"{key}_ids": np.concatenate([np.asarray(s, dtype=np.int32) for s in inputs[name]])
                for name, key in (("SST-2 dev", "sst2"), ("128 tokens", "fixed"))},
             **{f"{key}_lengths": np.asarray([len(s) for s in inputs[name]], dtype=np.int32)
                for name, key in (("SST-2 dev", "sst2"), ("128 tokens", "fixed"))})
    print("compare: ONNX export", flush=True)
    onnx_path = export_onnx(args)
    contestants = [make_contestant(name, args, onnx_path) for name in CONTESTANTS]
    print(f"compare: {args.rounds} interleaved rounds, {args.threads} threads", flush=True)
    rows = measure(args, inputs, contestants)
    del contestants
    print("compare: peak memory, each contestant alone", flush=True)
    memory = measure_memory(args)
    versions = {"date": datetime.date.today().isoformat(), "python": platform.python_version(),
                "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
                "transformers": transformers.__version__, "cpu": cpu_name()}
    write_svg(rows, args.out_svg)
    write_markdown(args, rows, memory, versions, args.out_md, args.out_svg, inputs)
    with open(os.path.join(args.work_dir, "comparison.json"), "w") as f:
        json.dump({"rows": rows, "memory": memory, "versions": versions}, f, indent=1)
    failures = [r for r in rows if r["contestant"] != HASHEE and r["max_abs_diff"] > DENSE_TOLERANCE]
    for r in failures:
        print(f"compare: {r['contestant']} differs from PyTorch by {r['max_abs_diff']:.2e} "
              f"({r['input']}, batch {r['batch']}), above {DENSE_TOLERANCE:g}", file=sys.stderr)
    print(f"compare: wrote {args.out_md} and {args.out_svg}")
    return 1 if failures else 0


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
