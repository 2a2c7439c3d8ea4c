#!/usr/bin/env python3
"""hashee beside ONNX Runtime, CTranslate2 and PyTorch: the same all-MiniLM-L6-v2, the same
machine, one run.

Every contestant embeds the same token ids (mask-aware mean of the final token states, the
sentence-transformers pooling before its L2 normalisation), interleaved in one process with the
same thread count:

  ONNX Runtime fp32   the model exported from the same safetensors by PyTorch's exporter, fused
                      by onnxruntime.transformers' BERT optimizer, CPU execution provider, all
                      graph optimisations (ORT_ENABLE_ALL);
  ONNX Runtime int8   that fused model through ORT's quantization pre-processing
                      (quant_pre_process) and onnxruntime.quantization.quantize_dynamic
                      (per_channel=True, weight_type=QInt8, the rest ORT's defaults: int8 weights
                      per output channel, activations quantized per call), same session options;
  CTranslate2 fp32    the model converted by ctranslate2's TransformersConverter (no
  CTranslate2 int8    quantization in the file), run by ctranslate2.Encoder with
                      compute_type "float32" / "int8" (weights quantized on load),
                      intra_threads = the thread count, inter_threads=1; it returns the token
                      states and the pooling is done here (numpy, inside the timing);
  PyTorch             transformers' BertModel, eval mode, torch.no_grad(): the reference;
  hashee P dense      the encoder over packed batches (libhashee_compare.so, through ctypes),
                      products in precision P (fp32 through hc_open; bf16, int8 through
                      hc_open_precision);
  hashee P HashEE     the same encoder with token exits from a frequency-hash table at 2x FLOPs.

ONNX Runtime, CTranslate2 and PyTorch take batches padded to their longest sequence (an attention
mask, or CTranslate2's lengths); hashee takes them packed. Tokenisation is done once, before
timing, and is not counted for anyone. For each input set (the SST-2 dev sentences; fixed
128-token inputs cut from the same text) and batch size, every contestant makes one untimed pass
(its outputs are compared with PyTorch's at that batch size), then --rounds timed passes, the
contestants' order rotating each round, with a short untimed pause before each pass (so no
library's spinning worker threads eat into the next one's time); the report takes each one's
median. At batch 1 every call is also timed on its own, for the latency percentiles (p50, p99
over all the calls of all the rounds). Peak memory: each contestant alone in a child process
(same inputs, every batch size), its peak resident set size.

Dense fp32 contestants (ONNX Runtime fp32, CTranslate2 fp32, hashee fp32 dense) must agree with
PyTorch within 1e-4 (the run fails otherwise); reduced precisions and HashEE are reported by
their mean cosine to PyTorch instead.

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

ORT32, ORT8 = "ONNX Runtime fp32", "ONNX Runtime int8"
CT32, CT8 = "CTranslate2 fp32", "CTranslate2 int8"
TORCH = "PyTorch"
PRECISIONS = ["fp32", "bf16", "int8"]


def hashee_name(precision, exits):
    return f"hashee {precision} {'HashEE' if exits else 'dense'}"


HASHEE_CONTESTANTS = {hashee_name(p, e): (p, e) for p in PRECISIONS for e in (False, True)}
CONTESTANTS = [ORT32, ORT8, CT32, CT8, TORCH] + list(HASHEE_CONTESTANTS)
DENSE_FP32 = [ORT32, CT32, hashee_name("fp32", False)]  # held to DENSE_TOLERANCE against PyTorch
DENSE_TOLERANCE = 1e-4
INPUT_SETS = (("SST-2 dev", "sst2"), ("128 tokens", "fixed"))
SETTLE_S = 0.05  # untimed pause before each timed pass
CPU_FLAGS = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--elue-dir", required=True)
    p.add_argument("--lib", required=True, help="libhashee_compare.so")
    p.add_argument("--table", required=True, help="HashEE exit table (hashee hash build)")
    p.add_argument("--work-dir", required=True, help="where the ONNX files, the CTranslate2 model and the inputs go")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fixed-inputs", type=int, default=192, help="how many 128-token inputs")
    p.add_argument("--limit", type=int, default=0, help="time only the first N SST-2 dev sentences (0: all; a quick check)")
    p.add_argument("--batches", default="1,8,32,128", help="comma-separated batch sizes (default 1,8,32,128)")
    p.add_argument("--contestants", default="",
                   help="comma-separated contestant names to run (default all; PyTorch, the reference, always runs): "
                        + ", ".join(CONTESTANTS))
    p.add_argument("--out-md", default="docs/comparison.md")
    p.add_argument("--out-svg", default="docs/comparison.svg")
    p.add_argument("--memory-child", choices=CONTESTANTS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batches: not a comma-separated list of integers: {args.batches!r}")
    if not args.batches or any(b <= 0 for b in args.batches):
        p.error("--batches: give one or more positive batch sizes")
    args.batches = sorted(set(args.batches))
    if args.contestants:
        wanted = [c.strip() for c in args.contestants.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in CONTESTANTS]
        if unknown:
            p.error(f"--contestants: unknown {unknown}; the names are: {', '.join(CONTESTANTS)}")
        args.contestants = [c for c in CONTESTANTS if c in wanted or c == TORCH]
    else:
        args.contestants = list(CONTESTANTS)
    return args


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


def save_inputs(args, inputs):
    import numpy as np

    np.savez(os.path.join(args.work_dir, "inputs.npz"),
             **{f"{key}_ids": np.concatenate([np.asarray(s, dtype=np.int32) for s in inputs[name]])
                for name, key in INPUT_SETS},
             **{f"{key}_lengths": np.asarray([len(s) for s in inputs[name]], dtype=np.int32)
                for name, key in INPUT_SETS})


def load_inputs(args):
    import numpy as np

    data = np.load(os.path.join(args.work_dir, "inputs.npz"))
    return {name: [list(s) for s in np.split(data[f"{key}_ids"], np.cumsum(data[f"{key}_lengths"])[:-1])]
            for name, key in INPUT_SETS}


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
# Model files in the work dir, each made once and kept while its source and tool are unchanged


def model_source(args, **extra):
    st = os.path.join(args.model_dir, "model.safetensors")
    return json.dumps({"model": os.path.realpath(st), "mtime": os.path.getmtime(st), **extra}, sort_keys=True)


def cached(path, stamp, source):
    return os.path.exists(path) and os.path.exists(stamp) and open(stamp).read() == source


def onnx_paths(work_dir):
    return os.path.join(work_dir, "model-opt.onnx"), os.path.join(work_dir, "model-opt-int8.onnx")


def ct2_dir(work_dir):
    return os.path.join(work_dir, "ctranslate2")


def export_onnx(args):
    """model.onnx (PyTorch's exporter, from the same safetensors) and model-opt.onnx (fused)."""
    import torch
    from onnxruntime.transformers import optimizer

    raw = os.path.join(args.work_dir, "model.onnx")
    opt = onnx_paths(args.work_dir)[0]
    stamp = opt[: -len(".onnx")] + ".source"
    source = model_source(args, torch=torch.__version__)
    if cached(opt, stamp, source):
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


def quantize_onnx(args, fp32_path):
    """model-opt-int8.onnx: the fused fp32 model through ORT's dynamic quantization (per-channel
    int8 weights; ORT's recipe for transformer encoders on CPU), after ORT's quantization
    pre-processing (symbolic shape inference, which knows the fused com.microsoft operators that
    quantize_dynamic's own shape inference does not)."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = onnx_paths(args.work_dir)[1]
    stamp = out[: -len(".onnx")] + ".source"
    source = json.dumps({"fp32": open(fp32_path[: -len(".onnx")] + ".source").read(),
                         "fp32_mtime": os.path.getmtime(fp32_path), "onnxruntime": onnxruntime.__version__,
                         "recipe": "quant_pre_process; quantize_dynamic per_channel=True weight_type=QInt8"},
                        sort_keys=True)
    if cached(out, stamp, source):
        return out
    pre = os.path.join(args.work_dir, "model-opt-pre.onnx")
    quant_pre_process(fp32_path, pre)
    quantize_dynamic(pre, out, per_channel=True, weight_type=QuantType.QInt8)
    with open(stamp, "w") as f:
        f.write(source)
    return out


def convert_ct2(args):
    """The CTranslate2 model directory (TransformersConverter, no quantization in the file)."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    out = ct2_dir(args.work_dir)
    stamp = out + ".source"
    source = model_source(args, ctranslate2=ctranslate2.__version__)
    if cached(os.path.join(out, "model.bin"), stamp, source):
        return out
    TransformersConverter(args.model_dir).convert(out, quantization=None, force=True)
    with open(stamp, "w") as f:
        f.write(source)
    return out


def prepare_models(args):
    """Makes (or finds) every model file the chosen contestants need; fails loudly if one can't be."""
    steps = []
    if ORT32 in args.contestants or ORT8 in args.contestants:
        steps.append(("ONNX export", lambda: export_onnx(args)))
    if ORT8 in args.contestants:
        steps.append(("ONNX Runtime int8 quantization", lambda: quantize_onnx(args, onnx_paths(args.work_dir)[0])))
    if CT32 in args.contestants or CT8 in args.contestants:
        steps.append(("CTranslate2 conversion", lambda: convert_ct2(args)))
    for what, step in steps:
        print(f"compare: {what}", flush=True)
        try:
            step()
        except Exception as e:
            raise SystemExit(f"compare: {what} failed, so its contestants cannot run: {type(e).__name__}: {e}") from e


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


class OrtContestant:
    def __init__(self, args, name):
        import onnxruntime as ort

        self.name = name
        path = onnx_paths(args.work_dir)[0 if name == ORT32 else 1]
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


class Ct2Contestant:
    def __init__(self, args, name):
        import ctranslate2
        import numpy as np

        self.np, self.ct2, self.name = np, ctranslate2, name
        self.encoder = ctranslate2.Encoder(ct2_dir(args.work_dir), device="cpu",
                                           compute_type="float32" if name == CT32 else "int8",
                                           intra_threads=args.threads, inter_threads=1)

    def prepare(self, batch):
        np = self.np
        ids, mask, _ = padded(batch)
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        lengths = np.asarray([len(s) for s in batch], dtype=np.int32)
        mask = mask.astype(np.float32)[:, :, None]
        # The StorageViews share the arrays' memory: keep the arrays with them.
        return (self.ct2.StorageView.from_array(ids), self.ct2.StorageView.from_array(lengths), mask,
                lengths.astype(np.float32)[:, None], ids, lengths)

    def run(self, prepared):
        ids, lengths, mask, count = prepared[:4]
        h = self.np.asarray(self.encoder.forward_batch(ids, lengths).last_hidden_state)
        return (h * mask).sum(1) / count


def load_hashee(path):
    """libhashee_compare.so with the C interface's signatures (bench/compare/hashee_compare.h)."""
    c = ctypes
    lib = c.CDLL(os.path.abspath(path))
    lib.hc_open.restype = lib.hc_open_precision.restype = c.c_void_p
    lib.hc_open.argtypes = [c.c_char_p, c.c_char_p, c.c_int, c.c_char_p, c.c_size_t]
    lib.hc_open_precision.argtypes = [c.c_char_p, c.c_char_p, c.c_int, c.c_char_p, c.c_char_p, c.c_size_t]
    lib.hc_embed.restype = c.c_int
    lib.hc_embed.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_int, c.c_void_p, c.c_void_p, c.c_char_p, c.c_size_t]
    lib.hc_hidden_size.argtypes = [c.c_void_p]
    lib.hc_product_kernel.restype = c.c_int
    lib.hc_product_kernel.argtypes = [c.c_void_p, c.c_char_p, c.c_size_t]
    lib.hc_close.argtypes = [c.c_void_p]
    return lib


class HasheeContestant:
    def __init__(self, args, name):
        import numpy as np

        self.np, self.name = np, name
        precision, exits = HASHEE_CONTESTANTS[name]
        table = args.table if exits else None
        lib = self.lib = load_hashee(args.lib)
        self.err = ctypes.create_string_buffer(4096)
        model_dir, table_arg = args.model_dir.encode(), table.encode() if table else None
        if precision == "fp32":
            self.handle = lib.hc_open(model_dir, table_arg, args.threads, self.err, len(self.err))
        else:
            self.handle = lib.hc_open_precision(model_dir, table_arg, args.threads, precision.encode(), self.err,
                                                len(self.err))
        if not self.handle:
            raise RuntimeError(f"{name}: {self.err.value.decode()}")
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
            raise RuntimeError(f"{self.name}: {self.err.value.decode()}")
        self.flops += flops
        return out

    def __del__(self):
        if getattr(self, "handle", None):
            self.lib.hc_close(self.handle)


def make_contestant(name, args):
    try:
        if name in (ORT32, ORT8):
            return OrtContestant(args, name)
        if name in (CT32, CT8):
            return Ct2Contestant(args, name)
        if name == TORCH:
            return TorchContestant(args)
        return HasheeContestant(args, name)
    except Exception as e:
        raise SystemExit(f"compare: {name} cannot be set up: {type(e).__name__}: {e}") from e


def set_threads(threads, torch=True):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if torch:
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)


# ---------------------------------------------------------------------------------------------
# The machine and the libraries


def cpu_info():
    name, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name is None:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu": f"{name or platform.processor() or 'unknown CPU'} ({os.cpu_count()} cores)",
            "flags": {f: f in flags for f in CPU_FLAGS}}


def ct2_system_lines(args):
    """What CTranslate2 logs about its CPU kernels when it loads a model (CT2_VERBOSE=1): CPU
    features, the ISA it selected, its GEMM backends, the compute types it picked. A child
    process, as it logs to the C-level stderr."""
    code = ("import ctranslate2, sys\n"
            "for t in ('float32', 'int8'):\n"
            "    ctranslate2.Encoder(sys.argv[1], device='cpu', compute_type=t, intra_threads=1)\n")
    r = subprocess.run([sys.executable, "-c", code, ct2_dir(args.work_dir)], capture_output=True, text=True,
                       env={**os.environ, "CT2_VERBOSE": "1"})
    if r.returncode:
        raise SystemExit(f"compare: CTranslate2 could not load its model:\n{r.stderr}")
    keep = ("CPU:", "ISA", "MKL", "backend", "compute type")
    lines = [line.split("[info]", 1)[-1].strip() for line in r.stderr.splitlines() if any(k in line for k in keep)]
    return list(dict.fromkeys(lines))


def hashee_kernels(args):
    """The library and kernel that run hashee's products in each precision on this machine, as
    the library reports them (hc_product_kernel), e.g. {"int8": "oneDNN 2.6.3, brg:avx512_core_vnni"}."""
    lib = load_hashee(args.lib)
    out = {}
    for precision in ("fp32", "bf16", "int8"):
        buf = ctypes.create_string_buffer(4096)
        handle = lib.hc_open_precision(args.model_dir.encode(), None, 1, precision.encode(), buf, len(buf))
        if not handle:
            sys.exit(f"compare: hashee {precision} cannot be set up: {buf.value.decode()}")
        if lib.hc_product_kernel(handle, buf, len(buf)) < 0:
            sys.exit(f"compare: hashee {precision}: {buf.value.decode()}")
        out[precision] = buf.value.decode()
        lib.hc_close(handle)
    return out


def environment(args):
    import numpy
    import onnxruntime
    import torch
    import transformers

    env = {"date": datetime.date.today().isoformat(), "python": platform.python_version(), **cpu_info(),
           "threads": args.threads, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
           "transformers": transformers.__version__, "numpy": numpy.__version__,
           "ort_build": onnxruntime.get_build_info() if hasattr(onnxruntime, "get_build_info") else None,
           "ort_device": onnxruntime.get_device(), "ort_providers": onnxruntime.get_available_providers(),
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "hashee_kernels": hashee_kernels(args)}
    if CT32 in args.contestants or CT8 in args.contestants:
        import ctranslate2

        env["ctranslate2"] = ctranslate2.__version__
        env["ct2_compute_types"] = sorted(ctranslate2.get_supported_compute_types("cpu"))
        env["ct2_log"] = ct2_system_lines(args)
    return env


def print_environment(env):
    print(f"compare: CPU {env['cpu']}; " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in env["flags"].items()))
    print(f"compare: ONNX Runtime {env['onnxruntime']} ({env['ort_device']}; {env['ort_build']}); "
          f"PyTorch {env['torch']} (CPU capability {env['torch_cpu_capability']}); transformers {env['transformers']}")
    if "ctranslate2" in env:
        print(f"compare: CTranslate2 {env['ctranslate2']}, CPU compute types {env['ct2_compute_types']}")
        for line in env["ct2_log"]:
            print(f"compare:   CTranslate2: {line}")
    for precision, kernel in env["hashee_kernels"].items():
        print(f"compare: hashee {precision} products: {kernel}", flush=True)


# ---------------------------------------------------------------------------------------------
# Measurement


def memory_child(args):
    """One contestant alone: load, run every input set at every batch size; print its peak RSS."""
    name = args.memory_child
    set_threads(args.threads, torch=name == TORCH)
    inputs = load_inputs(args)
    if name in (ORT32, ORT8):
        import onnxruntime  # noqa: F401  (imports first, to report them apart from the model and its run)
    elif name in (CT32, CT8):
        import ctranslate2  # noqa: F401
    elif name == TORCH:
        import transformers  # noqa: F401
    import numpy  # noqa: F401
    after_imports = rss_mib()
    c = make_contestant(name, args)
    for seqs in inputs.values():
        for size in args.batches:
            for b in batches_of(seqs, size):
                c.run(c.prepare(b))
    print(json.dumps({"after_imports_mib": after_imports, "peak_mib": peak_rss_mib()}))


def measure_memory(args):
    out = {}
    for name in args.contestants:
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", name] + sys.argv[1:]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"compare: memory run of {name} failed:\n{r.stderr}")
        out[name] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  {name:20} peak RSS {out[name]['peak_mib']:7.1f} MiB", flush=True)
    return out


def mean_cosine(a, b):
    import numpy as np

    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def measure(args, inputs, contestants):
    """Rows (one per input set, batch size and contestant) and batch-1 latencies."""
    import numpy as np

    rows, latency = [], {}
    for input_name, seqs in inputs.items():
        for size in args.batches:
            batches = batches_of(seqs, size)
            prepared = {c.name: [c.prepare(b) for b in batches] for c in contestants}
            outputs, flops = {}, {}
            for c in contestants:  # untimed pass: warm-up and the outputs
                if hasattr(c, "flops"):
                    c.flops[:] = 0
                outputs[c.name] = np.concatenate([c.run(p).copy() for p in prepared[c.name]])
                if hasattr(c, "flops"):
                    flops[c.name] = c.flops[0] / c.flops[1]
            times = {c.name: [] for c in contestants}
            calls = {c.name: [] for c in contestants}
            for r in range(args.rounds):
                for k in range(len(contestants)):
                    c = contestants[(k + r) % len(contestants)]
                    time.sleep(SETTLE_S)
                    if size == 1:  # every call on its own, for the latency percentiles
                        took = []
                        for p in prepared[c.name]:
                            t0 = time.perf_counter()
                            c.run(p)
                            took.append(time.perf_counter() - t0)
                        calls[c.name] += took
                        times[c.name].append(sum(took))
                    else:
                        t0 = time.perf_counter()
                        for p in prepared[c.name]:
                            c.run(p)
                        times[c.name].append(time.perf_counter() - t0)
            del prepared
            rate = {n: len(seqs) / statistics.median(t) for n, t in times.items()}
            ref = outputs[TORCH]
            hashee32 = outputs.get(hashee_name("fp32", False))
            for c in contestants:
                got = outputs[c.name]
                row = {"input": input_name, "batch": size, "contestant": c.name, "sentences_per_s": rate[c.name],
                       "vs_ort32": rate[c.name] / rate[ORT32] if ORT32 in rate else None,
                       "vs_ort8": rate[c.name] / rate[ORT8] if ORT8 in rate else None,
                       "max_abs_diff": float(np.max(np.abs(got - ref))), "mean_cosine": mean_cosine(got, ref),
                       "cosine_hashee_fp32": mean_cosine(got, hashee32) if hashee32 is not None else None,
                       "flops_speedup": flops.get(c.name), "times_s": times[c.name]}
                rows.append(row)
                if size == 1:
                    ms = np.asarray(calls[c.name]) * 1e3
                    latency[(input_name, c.name)] = {"p50_ms": float(np.percentile(ms, 50)),
                                                     "p99_ms": float(np.percentile(ms, 99)), "calls": len(ms)}
                ratio = lambda v, what: f"  {v:5.2f}x {what}" if v is not None else ""
                print(f"  {input_name:10} batch {size:3} {c.name:20} {row['sentences_per_s']:8.1f} sentences/s"
                      + ratio(row["vs_ort32"], "ORT fp32") + ratio(row["vs_ort8"], "ORT int8")
                      + f"  max|diff| {row['max_abs_diff']:.2e}  cos {row['mean_cosine']:.5f}"
                      + (f"  FLOPs {flops[c.name]:.2f}x" if c.name in flops else "")
                      + ("  p50 {p50_ms:.2f} ms p99 {p99_ms:.2f} ms".format(**latency[(input_name, c.name)])
                         if size == 1 else ""), flush=True)
    return rows, latency


# ---------------------------------------------------------------------------------------------
# Targets


def find(rows, input_name, batch, contestant):
    return next((r for r in rows if r["input"] == input_name and r["batch"] == batch and r["contestant"] == contestant), None)


def targets(rows, latency, args, inputs):
    """(what, measured, goal, PASS / MISS / not measured) for each target, from the measured rows."""
    out = []

    def check(what, value, goal, shown=None, times=True):
        """A target met at value >= goal; shown: how the measured value reads (default its ratio)."""
        goal_text = f"≥ {goal:g}" + ("x" if times else "")
        if value is None:
            out.append((what, "not measured", goal_text, "not measured"))
        else:
            out.append((what, shown or f"{value:.2f}x", goal_text, "PASS" if value >= goal else "MISS"))

    def ratio(input_name, batch, a, b):
        ra, rb = find(rows, input_name, batch, a), find(rows, input_name, batch, b)
        return ra["sentences_per_s"] / rb["sentences_per_s"] if ra and rb else None

    d32, d16, d8 = (hashee_name(p, False) for p in PRECISIONS)
    check(f"{d32} vs {ORT32}, 128 tokens, batch 32", ratio("128 tokens", 32, d32, ORT32), 1.3)
    check(f"{d32} vs {ORT32}, SST-2 dev, batch 32", ratio("SST-2 dev", 32, d32, ORT32), 2.0)
    for name in inputs:
        a, b = latency.get((name, ORT32)), latency.get((name, d32))
        check(f"{ORT32} p50 / {d32} p50, batch 1, {name}", a["p50_ms"] / b["p50_ms"] if a and b else None, 1.2,
              f"{a['p50_ms']:.2f} / {b['p50_ms']:.2f} ms = {a['p50_ms'] / b['p50_ms']:.3f}x" if a and b else None)
    big = [b for b in args.batches if b >= 8]
    for name in inputs:
        for b in big or [None]:
            check(f"{d16} vs {ORT8}, {name}, batch {b if b else '≥ 8'}", ratio(name, b, d16, ORT8) if b else None, 1.2)
    for name in inputs:
        check(f"{d8} vs {ORT8}, {name}, batch 32", ratio(name, 32, d8, ORT8), 1.5)
        check(f"{d8} vs {CT8}, {name}, batch 32", ratio(name, 32, d8, CT8), 1.3)
    for name in inputs:
        for key, ref in (("cosine_hashee_fp32", d32), ("mean_cosine", TORCH)):
            got = [r for r in rows if r["input"] == name and r["contestant"] == d8 and r[key] is not None]
            worst = min(got, key=lambda r: r[key]) if got else None
            check(f"{d8} mean cosine to {ref}, {name} (lowest over the batch sizes)", worst[key] if worst else None, 0.995,
                  f"{worst[key]:.5f} (batch {worst['batch']})" if worst else None, times=False)
    for p in PRECISIONS:
        dense, exits = hashee_name(p, False), hashee_name(p, True)
        for name in inputs:
            for b in big or [None]:
                rd, rh = (find(rows, name, b, dense), find(rows, name, b, exits)) if b else (None, None)
                if rd and rh:
                    wall = rh["sentences_per_s"] / rd["sentences_per_s"]
                    value, shown = wall / rh["flops_speedup"], (f"wall {wall:.2f}x / FLOPs {rh['flops_speedup']:.2f}x"
                                                                f" = {wall / rh['flops_speedup']:.3f}")
                else:
                    value = shown = None
                check(f"{exits} speed-up over {dense} vs its FLOPs speed-up, {name}, batch {b if b else '≥ 8'}",
                      value, 0.9, shown, times=False)
    return out


# ---------------------------------------------------------------------------------------------
# Report

STYLE = {ORT32: ("#555555", "-", "s"), ORT8: ("#555555", "--", "s"), CT32: ("#8c564b", "-", "D"),
         CT8: ("#8c564b", "--", "D"), TORCH: ("#d62728", "-", "x")}
HASHEE_COLOURS = {"fp32": "#1f77b4", "bf16": "#ff7f0e", "int8": "#2ca02c"}


def style(name):
    if name in STYLE:
        return STYLE[name]
    precision, exits = HASHEE_CONTESTANTS[name]
    return HASHEE_COLOURS[precision], "--" if exits else "-", "^" if exits else "o"


def write_svg(args, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    inputs = list(dict.fromkeys(r["input"] for r in rows))
    names = list(dict.fromkeys(r["contestant"] for r in rows))
    fig, axes = plt.subplots(2, len(inputs), figsize=(12, 8.5), squeeze=False, sharex=True)
    for col, input_name in enumerate(inputs):
        for name in names:
            pts = [find(rows, input_name, b, name) for b in args.batches]
            colour, line, marker = style(name)
            kw = dict(color=colour, linestyle=line, marker=marker, markersize=5, linewidth=1.4, label=name)
            axes[0][col].plot(args.batches, [p["sentences_per_s"] for p in pts], **kw)
            if pts[0]["vs_ort32"] is not None:
                axes[1][col].plot(args.batches, [p["vs_ort32"] for p in pts], **kw)
        top, bottom = axes[0][col], axes[1][col]
        top.set_title(input_name)
        top.set_yscale("log")
        top.yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        top.set_ylabel("sentences/s (log scale)")
        bottom.axhline(1.0, color="#999999", linewidth=0.8)
        if not any(r["vs_ort32"] is not None for r in rows):
            bottom.text(0.5, 0.5, f"{ORT32} not run", transform=bottom.transAxes, ha="center", va="center")
        bottom.set_ylabel(f"ratio to {ORT32}")
        bottom.set_xlabel("batch size")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(args.batches, [str(b) for b in args.batches])
            ax.minorticks_off()
            ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"all-MiniLM-L6-v2 on CPU, {args.threads} threads each: throughput (top) and ratio to {ORT32} "
                 "(bottom); solid: dense / fp32, dashed: HashEE / int8", fontsize=10)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)


def fmt_ratio(v):
    return f"{v:.2f}x" if v is not None else "—"


def write_markdown(args, rows, latency, memory, env, path, svg_path, inputs, failures):
    ran = list(dict.fromkeys(r["contestant"] for r in rows))
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in env["flags"].items())
    lines = [
        "# hashee beside ONNX Runtime, CTranslate2 and PyTorch",
        "",
        "Generated by `bash scripts/compare.sh` (scripts/compare.py); do not edit by hand.",
        "",
        f"Run of {env['date']} on {env['cpu']}, {args.threads} threads for every contestant, "
        f"{args.rounds} interleaved round{'s' if args.rounds != 1 else ''} (median), "
        f"batch sizes {', '.join(map(str, args.batches))}.",
        "",
        f"- CPU flags: {flags}.",
        f"- Python {env['python']}, numpy {env['numpy']}, PyTorch {env['torch']} (CPU capability "
        f"{env['torch_cpu_capability']}), transformers {env['transformers']}.",
        f"- ONNX Runtime {env['onnxruntime']}: {env['ort_device']}, providers {', '.join(env['ort_providers'])}; "
        f"{env['ort_build'] or 'no build info'}. Its MLAS kernels are chosen at run time from CPUID; ORT does not "
        "say which.",
    ]
    if "ctranslate2" in env:
        lines.append(f"- CTranslate2 {env['ctranslate2']}: CPU compute types {', '.join(env['ct2_compute_types'])}; "
                     f"its own log on loading: {'; '.join(env['ct2_log']) or 'nothing'}.")
    lines += [
        "- hashee product kernels: " + "; ".join(f"{p}: {k}" for p, k in env["hashee_kernels"].items()) + ".",
        "",
        "Model: all-MiniLM-L6-v2, the same `model.safetensors` for everyone. ONNX Runtime fp32 runs it as "
        "exported by PyTorch's exporter and fused by onnxruntime.transformers' BERT optimizer (CPU execution "
        "provider, `ORT_ENABLE_ALL`); ONNX Runtime int8 runs that fused model after "
        "ORT's quantization pre-processing (`quant_pre_process`) and `quantize_dynamic(per_channel=True, "
        "weight_type=QInt8)` (the rest ORT's defaults: QAttention, MatMulInteger, QEmbedLayerNormalization). "
        "CTranslate2 runs it as converted by its "
        "`TransformersConverter` (no quantization in the file), `compute_type` float32 or int8 (weights quantized "
        "on load), `intra_threads` = the thread count, `inter_threads=1`; its token states are mean-pooled here, "
        "inside the timing. Output compared: each input's mean of its final token states over its real tokens "
        "(sentence-transformers' pooling, before normalisation); differences are the largest absolute difference "
        "from PyTorch's output at the same batch size, over every input, and the mean over the inputs of the "
        f"cosine to PyTorch's. Dense fp32 contestants ({', '.join(DENSE_FP32)}) must agree within "
        f"{DENSE_TOLERANCE:g}; reduced precisions and HashEE are judged by their cosine.",
        "",
        f"Inputs: the {len(inputs['SST-2 dev'])} SST-2 dev sentences (ELUE), in order"
        + (f" (the first {args.limit} only: a quick check)" if args.limit else "")
        + f", and {len(inputs['128 tokens'])} inputs of exactly 128 tokens cut from the same text. ONNX "
        "Runtime, CTranslate2 and PyTorch get each batch padded to its longest sequence; hashee gets it packed "
        "(no padding). Tokenisation is done once beforehand and counted for nobody. HashEE: frequency hash, exit "
        "table built by `hashee hash build --target 2` on the SST-2 train sentences, exited tokens kept as keys "
        "and values.",
        "",
        f"| input | batch | contestant | sentences/s | vs {ORT32} | vs {ORT8} | max abs diff from PyTorch | "
        "mean cosine to PyTorch | FLOPs speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        flops = f"{r['flops_speedup']:.2f}x" if r["flops_speedup"] else ""
        lines.append(f"| {r['input']} | {r['batch']} | {r['contestant']} | {r['sentences_per_s']:.1f} | "
                     f"{fmt_ratio(r['vs_ort32'])} | {fmt_ratio(r['vs_ort8'])} | {r['max_abs_diff']:.1e} | "
                     f"{r['mean_cosine']:.5f} | {flops} |")
    lines += ["", f"![sentences/s by batch size]({os.path.basename(svg_path)})", ""]
    if latency:
        names = list(inputs)
        lines += ["## Latency at batch 1", "",
                  "Each call timed on its own, over every call of every round (" + ", ".join(
                      f"{latency[(n, TORCH)]['calls']} calls on {n}" for n in names) + "); milliseconds.", "",
                  "| contestant | " + " | ".join(f"{n} p50 | {n} p99" for n in names) + " |",
                  "|---|" + "---|---|" * len(names)]
        for c in ran:
            lines.append(f"| {c} | " + " | ".join(f"{latency[(n, c)]['p50_ms']:.2f} | {latency[(n, c)]['p99_ms']:.2f}"
                                                  for n in names) + " |")
        lines.append("")
    else:
        lines += ["## Latency at batch 1", "", "Not measured: batch 1 was not among --batches.", ""]
    lines += ["## Peak memory", "",
              "Each contestant alone in a child process running the same inputs at every batch size; peak "
              "resident set size of the process (Python interpreter and libraries included), and what it held "
              "after its imports, before loading the model.", "",
              "| contestant | peak RSS (MiB) | after imports (MiB) | peak above imports (MiB) |", "|---|---|---|---|"]
    for name in ran:
        m = memory[name]
        lines.append(f"| {name} | {m['peak_mib']:.1f} | {m['after_imports_mib']:.1f} | "
                     f"{m['peak_mib'] - m['after_imports_mib']:.1f} |")
    lines += ["", "## Targets", "",
              "Computed from the rows above; \"not measured\" where this run lacks the batch size or a contestant.", "",
              "| target | measured | goal | result |", "|---|---|---|---|"]
    for what, measured, goal, result in targets(rows, latency, args, inputs):
        lines.append(f"| {what} | {measured} | {goal} | {result} |")
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- {r['contestant']} differs from PyTorch by {r['max_abs_diff']:.2e} ({r['input']}, batch "
                  f"{r['batch']}), above {DENSE_TOLERANCE:g}" for r in failures]
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    args = parse_args()
    if args.memory_child:
        return memory_child(args)
    set_threads(args.threads)
    import numpy as np  # noqa: F401

    os.makedirs(args.work_dir, exist_ok=True)
    print("compare: inputs", flush=True)
    inputs = make_inputs(args)
    save_inputs(args, inputs)
    prepare_models(args)
    env = environment(args)
    print_environment(env)
    contestants = [make_contestant(name, args) for name in args.contestants]
    print(f"compare: {len(contestants)} contestants, {args.rounds} interleaved round(s), {args.threads} threads, "
          f"batches {args.batches}", flush=True)
    t0 = time.perf_counter()
    rows, latency = measure(args, inputs, contestants)
    print(f"compare: measured in {time.perf_counter() - t0:.0f} s", flush=True)
    del contestants
    print("compare: peak memory, each contestant alone", flush=True)
    t0 = time.perf_counter()
    memory = measure_memory(args)
    print(f"compare: memory runs in {time.perf_counter() - t0:.0f} s", flush=True)
    failures = [r for r in rows if r["contestant"] in DENSE_FP32 and r["max_abs_diff"] > DENSE_TOLERANCE]
    write_svg(args, rows, args.out_svg)
    write_markdown(args, rows, latency, memory, env, args.out_md, args.out_svg, inputs, failures)
    with open(os.path.join(args.work_dir, "comparison.json"), "w") as f:
        json.dump({"rows": rows, "latency": [{"input": k[0], "contestant": k[1], **v} for k, v in latency.items()],
                   "memory": memory, "environment": env,
                   "targets": targets(rows, latency, args, inputs)}, f, indent=1)
    for what, measured, goal, result in targets(rows, latency, args, inputs):
        print(f"compare: target {result:12} {what}: {measured} (goal {goal})")
    for r in failures:
        print(f"compare: {r['contestant']} differs from PyTorch by {r['max_abs_diff']:.2e} "
              f"({r['input']}, batch {r['batch']}), above {DENSE_TOLERANCE:g}", file=sys.stderr)
    print(f"compare: wrote {args.out_md} and {args.out_svg}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
