#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (small, hand-made).

    python3 fuzz/make_seeds.py [--model DIR]

DIR (default ~/.cache/hashee/all-MiniLM-L6-v2) supplies the real config.json and a few hundred
lines of the real vocab.txt; everything else is written here. Input layouts (see targets.hpp):
tokenizer seeds start with 3 bytes [flags][max_length selector][split]; TSV seeds with 1 mode
byte [bit 0 header, bits 1-2 min_fields, bits 3-5 max_fields span].
"""
import argparse
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, pad_to=8):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    off = 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad_to:
        h += b" " * (-len(h) % pad_to)
    return struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors)


def safetensors_seeds():
    f32 = struct.pack("<6f", 1, -2, 0.5, 3.25, 1e-3, -0.0)
    f16 = struct.pack("<4e", 1, -2, 0.5, 65504)
    bf16 = bytes.fromhex("803f 00c0 003f 807f".replace(" ", ""))  # 1 -2 0.5 inf
    i64 = struct.pack("<3q", 1, -1, 2**62)
    write("safetensors", "f32_2x3", safetensors([("w", "F32", [2, 3], f32)]))
    write("safetensors", "f32_unaligned", safetensors([("w", "F32", [6], f32)], pad_to=0))
    write("safetensors", "f16", safetensors([("h", "F16", [4], f16)]))
    write("safetensors", "bf16", safetensors([("b", "BF16", [2, 2], bf16)]))
    write("safetensors", "i64", safetensors([("ids", "I64", [3], i64)]))
    write("safetensors", "mixed_meta", safetensors(
        [("a.weight", "F32", [2, 3], f32), ("a.bias", "F16", [4], f16), ("c", "BF16", [4], bf16),
         ("d", "I64", [3], i64), ("e", "U8", [2], b"\x01\x02"), ("f", "BOOL", [1], b"\x01")],
        metadata={"format": "pt", "note": "caf\u00e9"}))
    write("safetensors", "empty_tensors", safetensors(
        [("z", "F32", [0], b""), ("z2", "F16", [3, 0, 2], b""), ("s", "F32", [], f32[:4])]))
    write("safetensors", "no_tensors", safetensors([], metadata={}))
    write("safetensors", "all_dtypes", safetensors(
        [(dt, dt, [1], b"\x00" * n) for dt, n in
         [("F64", 8), ("I32", 4), ("I16", 2), ("I8", 1), ("U64", 8), ("U32", 4), ("U16", 2),
          ("F8_E4M3", 1), ("F8_E5M2", 1)]]))


def config_seeds(model_dir):
    real = os.path.join(model_dir, "config.json")
    if os.path.exists(real):
        with open(real, "rb") as f:
            text = f.read()
    else:  # the same content, for machines without the model
        text = json.dumps({
            "_name_or_path": "nreimers/MiniLM-L6-H384-uncased", "architectures": ["BertModel"],
            "attention_probs_dropout_prob": 0.1, "gradient_checkpointing": False,
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 384,
            "initializer_range": 0.02, "intermediate_size": 1536, "layer_norm_eps": 1e-12,
            "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
            "num_hidden_layers": 6, "pad_token_id": 0, "position_embedding_type": "absolute",
            "transformers_version": "4.8.2", "type_vocab_size": 2, "use_cache": True,
            "vocab_size": 30522}, indent=2).encode()
    write("config", "minilm_real.json", text)
    base = json.loads(text)
    minimal = {k: base[k] for k in ("model_type", "hidden_size", "num_hidden_layers",
                                    "num_attention_heads", "intermediate_size", "hidden_act",
                                    "layer_norm_eps", "max_position_embeddings",
                                    "type_vocab_size", "vocab_size", "pad_token_id")}
    write("config", "minimal.json", json.dumps(minimal))
    v = dict(minimal, model_type="elasticbert", num_output_layers=12, max_output_layers=12,
             is_decoder=False, add_cross_attention=False, pruned_heads={},
             id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    write("config", "elasticbert.json", json.dumps(v, indent=1))
    write("config", "bad_heads.json", json.dumps(dict(minimal, num_attention_heads=7)))
    write("config", "bad_eps.json", json.dumps(dict(minimal, layer_norm_eps=-1.5e308)))
    write("config", "big_ints.json", json.dumps(dict(minimal, hidden_size=2**31, vocab_size=-2**63)))
    write("config", "duplicate.json", '{"hidden_size": 1, "hidden_size": 2}')
    write("config", "nested.json", json.dumps(dict(minimal, task_specific_params={"a": [[{"b": [1]}]]})))
    write("config", "not_object.json", "[1, 2.5e3, true, null, \"\\u00e9\"]")


def vocab_seeds(model_dir):
    real = os.path.join(model_dir, "vocab.txt")
    if os.path.exists(real):
        with open(real, "rb") as f:
            lines = f.read().split(b"\n")
        # the specials and [unused], some words and ## pieces, some CJK
        cut = lines[:110] + lines[1000:1100] + lines[7000:7050] + lines[29000:29040]
        write("vocab", "minilm_cut.txt", b"\n".join(cut) + b"\n")
    write("vocab", "small.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\nworld\n\u4e2d\n")
    write("vocab", "crlf.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nx\r\n##y")
    write("vocab", "duplicate.txt", "a\nb\na\n")
    write("vocab", "empty_line.txt", "a\n\nb\n")


def tokenizer_seeds():
    texts = [
        "Hello, world! The cat sat on the mat.",
        "unaffable playing running\tRUNNING  HeLLo",
        "Caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \u0130stanbul \u03a3\u03b1\u03c3",
        "\u4e2d\u6587\u5b57\u3002\u4f60\u597d\uff01\u3053\u3093\u306b\u3061\u306f",
        "[CLS] a [SEP] b [MASK] [UNK][PAD] [mask] [CLS",
        "x" * 120 + " " + "xx" * 5,
        "\u200b\ufeff\u00ad\x01\x7f\r\n\u3000\u2028 tab\there \ufffd",
        "e\u0301 a\u0308\u0323 \ufb01 \u1e9e \u2126 \U0001f600 \U00020000",
        "",
    ]
    for i, t in enumerate(texts):
        write("tokenizer", "text%d" % i, bytes([i * 5, i, (len(t) // 2) % 256]) + t.encode())


def exit_table_seeds():
    # the vocabulary of targets.hpp (small_vocab), to compute the fingerprint
    toks = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a cat sat on mat un ##aff ##able ##s ##ing play "
            "run ##ning hello world ##ed ##ly x ##x ## #").split()
    toks += ["\u4e2d", "\u6587", "\u5b57", "caf\u00e9", "cafe", "na\u00efve", "naive",
             "\u043c\u0438\u0440", "\u03b1", "##\u03b2"]
    toks += ". , ! ? ' \" - ( ) [ ]".split() + ["\u3002", "1", "2", "##3"]
    h = 0xcbf29ce484222325
    for t in toks:
        for c in t.encode():
            h = ((h ^ c) * 0x100000001b3) % 2**64
        h = ((h ^ 0x0A) * 0x100000001b3) % 2**64
    fp = "%016x" % h
    n = len(toks)
    good = {"format": "hashee-exit-table", "version": 1, "policy": "frequency", "num_layers": 6,
            "vocab_size": n, "vocab_fingerprint": fp, "exits": [1 + i % 6 for i in range(n)]}
    write("exit_table", "valid.json", json.dumps(good, separators=(",", ":")))
    write("exit_table", "valid_pretty.json", json.dumps(dict(good, policy="mi \u00e9"), indent=1))
    write("exit_table", "bad_layer.json", json.dumps(dict(good, exits=[0] + [6] * (n - 1))))
    write("exit_table", "wrong_fp.json", json.dumps(dict(good, vocab_fingerprint="0" * 16)))
    write("exit_table", "unknown_field.json", json.dumps(dict(good, extra=[1, {"a": None}])))
    write("exit_table", "short.json", json.dumps(dict(good, exits=[6] * (n - 1))))
    write("exit_table", "types.json", json.dumps(dict(good, version="1", num_layers=6.0)))
    return n


def tsv_seeds():
    header = "sentence\tlabel\n"
    rows = [
        "it 's a charming and often affecting journey .\t1",
        "unflinchingly bleak and desperate\t0",
        "the acting , costumes , music , cinematography and sound are all astounding .\t1",
        "\"quotes\" are text\t0",
    ]
    write("tsv", "header", bytes([1]) + (header + "\n".join(rows) + "\n").encode())
    write("tsv", "header_bom_crlf", bytes([1]) + ("\ufeffx\ty\tz\r\n1\t2\t3\r\na\tb\tc").encode())
    pairs = "A man is playing a flute.\tA man plays a flute.\t4.8\nCats\tdogs\t0.0\n"
    write("tsv", "noheader_3", bytes([(3 << 1) | (0 << 3)]) + pairs.encode())
    write("tsv", "noheader_range", bytes([(1 << 1) | (2 << 3)]) + "one\none\ttwo\n\t\t\n".encode())
    write("tsv", "ragged", bytes([1]) + "a\tb\n1\n".encode())
    write("tsv", "bad_utf8", bytes([0x39]) + b"ok\n\xff\xfe\n")
    write("tsv", "empty_header", bytes([1]) + b"a\t\tb\n")
    write("tsv", "unicode", bytes([0x3F]) + "\u4e2d\u6587\tcaf\u00e9\n\u00e9\t\U0001f600\n".encode())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/hashee/all-MiniLM-L6-v2"))
    args = ap.parse_args()
    safetensors_seeds()
    config_seeds(args.model)
    vocab_seeds(args.model)
    tokenizer_seeds()
    exit_table_seeds()
    tsv_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
