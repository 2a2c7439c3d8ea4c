#!/usr/bin/env python3
"""Regenerates the tokenizer goldens under tests/data/tokenizer (and, with --unicode-tables,
prints the character-class tables of include/hashee/text/detail/unicode.hpp).

The reference is Hugging Face's BertTokenizer (transformers 5, backed by the Rust `tokenizers`
library) loaded with BertTokenizer.from_pretrained(--model-dir). Deterministic: same inputs,
same bytes.

    python3 scripts/make_tokenizer_goldens.py --model-dir ~/.cache/hashee/all-MiniLM-L6-v2 \
        --elue-dir ../shared/data/elue --out tests/data/tokenizer
    python3 scripts/make_tokenizer_goldens.py --unicode-tables   # prints C++ tables
"""
import argparse
import json
import os
import struct
import sys

ELUE_FILES = [  # (relative path, text columns)
    ("SST-2/train.tsv", ["sentence"]),
    ("SST-2/dev.tsv", ["sentence"]),
    ("MRPC/train.tsv", ["#1 String", "#2 String"]),
    ("MRPC/dev.tsv", ["#1 String", "#2 String"]),
    ("STS-B/train.tsv", ["sentence1", "sentence2"]),
    ("STS-B/dev.tsv", ["sentence1", "sentence2"]),
    ("SNLI/dev.tsv", ["premise", "hypothesis"]),
    ("SciTail/dev.tsv", ["premise", "hypothesis"]),
]
PAIR_MAX_LENGTH = 128


def fnv1a32(ids):
    """32-bit FNV-1a over the ids, each as 4 little-endian bytes (int32)."""
    h = 0x811C9DC5
    for b in struct.pack("<%di" % len(ids), *ids):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def read_tsv(path):
    """Lines split on '\\n' only (not str.splitlines), a UTF-8 BOM and a trailing '\\r'
    removed, fields split on '\\t' (no quoting). Returns (header, [(line_no, fields)])."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    rows = []
    for i, line in enumerate(lines):
        if line.endswith("\r"):
            line = line[:-1]
        rows.append((i + 1, line.split("\t")))
    return rows[0][1], rows[1:]


def load_reference(model_dir):
    from transformers import BertTokenizer
    return BertTokenizer.from_pretrained(model_dir)


def load_legacy(model_dir):
    """The pure-Python tokenizer of transformers 4 (tokenization_bert_legacy.py), or None."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Legacy
    except Exception as e:  # pragma: no cover
        print("legacy tokenizer unavailable:", e, file=sys.stderr)
        return None
    return Legacy.from_pretrained(model_dir)


def elue_goldens(tok, legacy, elue_dir, out_dir, diffs):
    os.makedirs(os.path.join(out_dir, "elue"), exist_ok=True)
    for rel, cols in ELUE_FILES:
        header, rows = read_tsv(os.path.join(elue_dir, rel))
        idx = [header.index(c) for c in cols]
        texts = [[r[1][i] for i in idx] for r in rows]
        out = ["# %s columns=%s pair_max_length=%d rows=%d" % (rel, ",".join(cols), PAIR_MAX_LENGTH, len(rows)),
               "# per data line: fnv1a32(ids) len(ids) for each column alone (with [CLS]/[SEP], no "
               "truncation)" + (", then the pair truncated longest_first" if len(cols) == 2 else "")]
        singles = [tok([t[k] for t in texts], truncation=False)["input_ids"] for k in range(len(cols))]
        if len(cols) == 2:
            pairs = tok([t[0] for t in texts], [t[1] for t in texts], truncation=True,
                        max_length=PAIR_MAX_LENGTH)["input_ids"]
        for j, (line_no, _) in enumerate(rows):
            fields = []
            for k in range(len(cols)):
                ids = singles[k][j]
                fields.append("%08x %d" % (fnv1a32(ids), len(ids)))
            if len(cols) == 2:
                ids = pairs[j]
                fields.append("%08x %d" % (fnv1a32(ids), len(ids)))
            out.append(" ".join(fields))
        if legacy is not None:
            for k in range(len(cols)):
                leg = legacy([t[k] for t in texts], truncation=False)["input_ids"]
                for j, (line_no, _) in enumerate(rows):
                    if leg[j] != singles[k][j]:
                        diffs.append({"where": "%s:%d %s" % (rel, line_no, cols[k]), "text": texts[j][k]})
        name = rel.replace("/", "_").replace(".tsv", ".txt")
        with open(os.path.join(out_dir, "elue", name), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(out) + "\n")


# The torture set: (name, text). Control characters are written as escapes; the committed
# JSON holds them escaped too, so the file stays readable.
def torture_texts():
    long_word = "a" * 101
    exact_100 = "b" * 100
    return [
        ("empty", ""),
        ("only_spaces", "   "),
        ("only_whitespace_mixed", " \t\n\r\u00a0\u2028\u2029\u3000 "),
        ("only_punct", "!?.,;:'\"()[]{}<>@#$%^&*-_=+~`|\\/"),
        ("ascii_sentence", "Hello, World! This is a TEST of the tokenizer."),
        ("numbers", "3.14159 1,000,000 42nd 2023-10-05 0x1F 1e-9 -7"),
        ("url", "See https://example.com/path?q=1&r=two#frag or mail me@example.org."),
        ("accents_nfc", "café naïve Ångström résumé façade jalapeño Zürich"),
        ("accents_nfd", "cafe\u0301 nai\u0308ve A\u030angstro\u0308m"),
        ("combining_alone", "\u0301\u0302 x\u0323\u0307 \u0344"),
        ("turkish", "İstanbul ISTANBUL ıi İi"),
        ("greek_sigma", "ΟΔΥΣΣΕΥΣ Σίσυφος ΣΑΣ όσος"),
        ("german", "Straße STRASSE ß ẞ Maß"),
        ("cyrillic", "Привет, мир! ЁЖИК Ёжик"),
        ("arabic", "مرحبا بالعالم، كيف حالك؟ ٣٤٥"),
        ("hindi", "नमस्ते दुनिया। हिन्दी"),
        ("chinese", "我爱自然语言处理。北京欢迎你！"),
        ("chinese_mixed", "BERT模型很好abc中文def"),
        ("japanese", "こんにちは世界、カタカナとひらがな。"),
        ("korean", "안녕하세요 세계 한국어"),
        ("cjk_ext", "\u3400\u4dbf\U00020000\U0002a6d6\uf900\U0002f800 \u2e80\u3005"),
        ("emoji", "I love it 😀😂👍 🥰"),
        ("emoji_zwj", "👨\u200d👩\u200d👧\u200d👦 family 🏳\ufe0f\u200d🌈"),
        ("emoji_skin", "👍🏽 👋🏿 wave"),
        ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff\x85g\x0bh\x0ci"),
        ("replacement_char", "bad\ufffdchar \ufffd"),
        ("nbsp", "non\u00a0breaking\u00a0space"),
        ("line_sep", "line\u2028separator\u2029para"),
        ("zero_width", "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060wj"),
        ("soft_hyphen", "co\u00adoperate"),
        ("fullwidth", "ＡＢＣ ｆｕｌｌ　ｗｉｄｔｈ １２３！"),
        ("tabs_newlines", "tab\there\nnewline\r\ncrlf"),
        ("special_cls", "[CLS] hello [SEP]"),
        ("special_mask", "The capital is [MASK]."),
        ("special_glued", "a[MASK]b[UNK]c[PAD]"),
        ("special_lower", "[cls] [mask] [Sep]"),
        ("special_partial", "[CLS [MASK [MASK]] [[SEP]]"),
        ("long_word_101", long_word),
        ("long_word_100", exact_100),
        ("long_word_in_sentence", "short " + long_word + " words"),
        ("long_accented", "é" * 101),
        ("long_accented_nfd_100", "e\u0301" * 60),
        ("unknown_chars", "⌘ ☃ ♞ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
        ("math", "∑ x² ≤ √y ± ∞ α→β"),
        ("currency", "$5 €10 £3 ¥100 ₹50 ₿1"),
        ("mixed", "Mixed: café 中文 😀 [MASK] ǅ Ǆ ǆ ΐ ﬁ ﬀ İ ß Σ."),
        ("apostrophes", "don't can’t ‘quoted’ “double” «guillemets» „low“"),
        ("dashes", "a–b—c‐d‑e ― ⁓"),
        ("newer_unicode", "\u061d \u166d \u2e43 \u2e5d \ua7cb\ua7cc \u1c89 \U00010ead \u0890"),
        ("unicode_version_edges", "\U0002b820\U0002b91f\U0002b920 x\U00011938 \U00010570 \ua7c0 \u2c2f \U00010d50 \uf9001\ufa6d"),
        ("hangul_jamo", "\u1100\u1161\u11a8 \u3131\u314f"),
        ("word_unk_middle", "abc☃def xyz"),
        ("repeated", "the the the the the the the the the the"),
        ("sst_style", "it 's a `` great '' film -lrb- really -rrb- \\/ yes"),
    ]


PAIR_CASES = [  # (a, b, max_length)
    ("The quick brown fox jumps over the lazy dog.", "A fast fox.", 8),
    ("A fast fox.", "The quick brown fox jumps over the lazy dog.", 8),
    ("one two three four five six", "seven eight nine ten eleven twelve", 8),
    ("one two three four five six", "seven eight nine ten eleven twelve", 9),
    ("one two three four five six", "seven eight nine ten eleven twelve", 16),
    ("short", "this second sentence is clearly much longer than the first one", 16),
    ("this first sentence is clearly much longer than the second one", "short", 16),
    ("a b c d e f g h i j k l m n o p", "q", 16),
    ("café naïve 中文", "😀 [MASK] İstanbul", 8),
    ("", "", 8),
    ("", "only the second", 5),
    ("only the first", "", 5),
    ("x y", "z", 3),
    ("a b c d e f g h", "i j k l m n o p", 11),
    ("a b c d e f g h", "i j k l m n o p", 12),
]

SINGLE_TRUNC_CASES = [  # (text, max_length)
    ("The quick brown fox jumps over the lazy dog.", 8),
    ("The quick brown fox jumps over the lazy dog.", 2),
    ("The quick brown fox jumps over the lazy dog.", 3),
    ("unaffable Ångström 中文字符", 6),
    ("short", 16),
]

BATCHES = [  # (single texts or pairs, max_length)
    (["Hello world!", "A much longer sentence that needs padding for the others.", "", "café 中文"], 32),
    (["Hello world!", "A much longer sentence that will be truncated because it is long."], 8),
    ([("The premise is here.", "A hypothesis."), ("Short.", "A much longer hypothesis that goes on and on."),
      ("one two three four five six", "seven eight nine ten eleven twelve")], 12),
    ([("A", "B"), ("C", "D")], 128),
    # an empty second text stays a pair in a batch ([CLS] x [SEP] [SEP]), unlike tokenizer(a, "")
    ([("x", ""), ("y", "z")], 16),
]


def torture_goldens(tok, legacy, out_dir, diffs):
    def enc(a, b=None, **kw):
        r = tok(a, b, **kw) if b is not None else tok(a, **kw)
        return r

    singles = []
    for name, text in torture_texts():
        r = enc(text, truncation=False)
        entry = {"name": name, "text": text, "tokens": tok.tokenize(text), "ids": r["input_ids"]}
        singles.append(entry)
        if legacy is not None:
            lr = legacy(text, truncation=False)["input_ids"]
            if lr != r["input_ids"]:
                diffs.append({"where": "torture:" + name, "text": text,
                              "reference_tokens": tok.convert_ids_to_tokens(r["input_ids"]),
                              "legacy_tokens": legacy.convert_ids_to_tokens(lr)})
    pairs = []
    for a, b, ml in PAIR_CASES:
        r = enc(a, b, truncation=True, max_length=ml)
        pairs.append({"a": a, "b": b, "max_length": ml, "ids": r["input_ids"], "type_ids": r["token_type_ids"]})
        if legacy is not None:
            lr = legacy(a, b, truncation=True, max_length=ml)["input_ids"]
            if lr != r["input_ids"]:
                diffs.append({"where": "pair max_length=%d" % ml, "text": [a, b],
                              "reference_tokens": tok.convert_ids_to_tokens(r["input_ids"]),
                              "legacy_tokens": legacy.convert_ids_to_tokens(lr)})
    truncs = []
    for text, ml in SINGLE_TRUNC_CASES:
        r = enc(text, truncation=True, max_length=ml)
        truncs.append({"text": text, "max_length": ml, "ids": r["input_ids"]})
    batches = []
    for items, ml in BATCHES:
        if isinstance(items[0], tuple):
            r = tok([a for a, _ in items], [b for _, b in items], padding=True, truncation=True, max_length=ml)
            inputs = [{"first": a, "second": b} for a, b in items]
        else:
            r = tok(items, padding=True, truncation=True, max_length=ml)
            inputs = [{"first": a} for a in items]
        batches.append({"inputs": inputs, "max_length": ml, "ids": r["input_ids"],
                        "type_ids": r["token_type_ids"], "mask": r["attention_mask"]})
    doc = {
        "reference": "transformers %s BertTokenizer (tokenizers %s)" % (tok_versions()),
        "special_ids": {t: tok.convert_tokens_to_ids(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]},
        "singles": singles, "pairs": pairs, "single_truncation": truncs, "batches": batches,
    }
    with open(os.path.join(out_dir, "torture.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(doc, f, ensure_ascii=True, indent=1, sort_keys=False)
        f.write("\n")


def tok_versions():
    import tokenizers
    import transformers
    return transformers.__version__, tokenizers.__version__


def unicode_tables():
    """Probes the reference's normalizer + pre-tokenizer with 'a' + chr(c) + 'a' for every
    code point and prints the non-ASCII character classes it implies as C++ range tables."""
    from tokenizers import normalizers, pre_tokenizers
    pt = pre_tokenizers.BertPreTokenizer()
    plain = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    control, punct, mark = [], [], []
    for c in range(0x80, 0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        s = "a" + chr(c) + "a"
        w = [x for x, _ in pt.pre_tokenize_str(plain.normalize_str(s))]
        if w == ["aa"]:
            control.append(c)
        elif w == ["a", chr(c), "a"]:
            punct.append(c)
        elif w != ["a", "a"] and strip.normalize_str(s) == "aa":
            mark.append(c)

    # Lower-case mappings utf8proc may lack: the reference lower-cases with Rust's
    # char::to_lowercase (a recent Unicode); utf8proc 2.6 knows Unicode 13. List every mapping
    # of a character newer than this Python's unicodedata, plus the Unicode 14 case pairs.
    import unicodedata
    lower = normalizers.Lowercase()
    u14 = [(0x2C2F, 0x2C2F), (0xA7C0, 0xA7C0), (0xA7D0, 0xA7D0), (0xA7D6, 0xA7D6), (0xA7D8, 0xA7D8),
           (0x10570, 0x10595)]
    lower_new = []
    for c in range(0x80, 0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        l = lower.normalize_str(chr(c))
        if l == chr(c) or len(l) != 1:
            continue
        if unicodedata.category(chr(c)) == "Cn" or any(a <= c <= b for a, b in u14):
            lower_new.append((c, ord(l) - c))

    def ranges(cps):
        out = []
        for c in cps:
            if out and out[-1][1] == c - 1:
                out[-1][1] = c
            else:
                out.append([c, c])
        return out

    for name, cps in (("control", control), ("punctuation", punct), ("nonspacing_mark", mark)):
        rs = ranges(cps)
        print("inline constexpr code_point_range %s_ranges[] = {" % name)
        line = "   "
        for a, b in rs:
            item = " {0x%X, 0x%X}," % (a, b)
            if len(line) + len(item) > 96:
                print(line)
                line = "   "
            line += item
        print(line)
        print("};")
    runs = []
    for c, d in lower_new:
        if runs and runs[-1][1] == c - 1 and runs[-1][2] == d:
            runs[-1][1] = c
        else:
            runs.append([c, c, d])
    print("inline constexpr lower_case_range lower_case_additions[] = {")
    for a, b, d in runs:
        print("    {0x%X, 0x%X, %d}," % (a, b, d))
    print("};")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.expanduser("~/.cache/hashee/all-MiniLM-L6-v2"))
    ap.add_argument("--elue-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "elue"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer"))
    ap.add_argument("--unicode-tables", action="store_true", help="print the C++ character tables and exit")
    args = ap.parse_args()
    if args.unicode_tables:
        unicode_tables()
        return
    os.makedirs(args.out, exist_ok=True)
    tok = load_reference(args.model_dir)
    legacy = load_legacy(args.model_dir)
    diffs = []
    torture_goldens(tok, legacy, args.out, diffs)
    elue_goldens(tok, legacy, args.elue_dir, args.out, diffs)
    with open(os.path.join(args.out, "legacy_differences.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(diffs, f, ensure_ascii=True, indent=1)
        f.write("\n")
    print("legacy differences:", len(diffs), file=sys.stderr)


if __name__ == "__main__":
    main()
