#!/usr/bin/env bash
# The hashee command as a user runs it: embeddings out, errors with a message and a non-zero
# status, and never a half-written output file.
#   cli_test.sh HASHEE_BINARY MODEL_DIR ELUE_DIR [commands|baselines|finetune]
# "commands" (the default) checks embed, hash build, eval and the error cases; "baselines"
# checks `hashee baselines`; "finetune" checks `hashee finetune` and `hashee predict` (three
# ctest tests, so they can run in parallel).
set -euo pipefail
bin=$1 model=$2 elue=$3 part=${4:-commands}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

expect_error() { # expect_error "[ID]" or "[ID] message part" args...: status 1, `hashee: error: [ID] ...`, no stdout
  local want=$1 rc=0 id text; shift
  id=${want%%]*}]; text=${want#"$id"}; text=${text# }
  "$bin" "$@" > "$tmp/stdout" 2> "$tmp/err" || rc=$?
  [ -n "${HASHEE_CLI_ID_LOG:-}" ] && echo "$want => $(grep -oE '^hashee: error: \[[A-Z][0-9]+\]' "$tmp/err")" >> "$HASHEE_CLI_ID_LOG"
  [ "$rc" -eq 1 ] || { cat "$tmp/err" >&2; fail "exit status $rc, not 1: $*"; }
  grep -qF -- "hashee: error: $id " "$tmp/err" || { cat "$tmp/err" >&2; fail "not 'hashee: error: $id': $*"; }
  [ -z "$text" ] || grep -qF -- "$text" "$tmp/err" || { cat "$tmp/err" >&2; fail "message lacks '$text'"; }
  [ -s "$tmp/stdout" ] && { head -c 300 "$tmp/stdout" >&2; fail "wrote to stdout although it failed: $*"; }
  return 0
}

if [ "$part" = baselines ]; then
# Sentence-level baselines: every method gets a row, the report and plots are written.
"$bin" baselines --model "$model" --elue "$elue" --tasks sst2,stsb --train-samples 48 --epochs 1 --limit 16 \
  --timing-samples 2 --out "$tmp/base" > "$tmp/base.md" 2> /dev/null
for m in "| dense |" "| static | k=3 |" "| DeeBERT | S=0.20 |" "| FastBERT | speed=0.40 |" "| PABEE | patience=2 |" \
         "| BERxiT | confidence=0.80 |" "| HashEE | frequency 2.0x |" "| HashEE+entropy | S=0.30 |" "| PABEE | patience=2 tau=0.3 |"; do
  grep -qF -- "$m" "$tmp/base.md" || { cat "$tmp/base.md" >&2; fail "baselines printed no row '$m'"; }
done
for f in baselines.md baselines-sst2.svg baselines-sst2-exits.svg baselines-stsb.svg; do
  [ -s "$tmp/base/$f" ] || fail "baselines did not write $f"
done
expect_error "[C11] unknown task 'nope'" baselines --model "$model" --elue "$elue" --tasks nope --out "$tmp/o11"
[ -e "$tmp/o11/baselines.md" ] && fail "left a baselines report behind"
echo "cli baselines: all checks passed"
exit 0
fi

if [ "$part" = finetune ]; then
# A short fine-tuning run on SST-2 (48 examples, 2 epochs of 3 steps): the best dev epoch is a
# Hugging Face model directory, and the training state is gone once the run is complete.
ft=(finetune --model "$model" --task sst2 --elue "$elue" --limit 48 --dev-limit 40 --epochs 2 --batch-size 16 --seed 3 --threads 2)
"$bin" "${ft[@]}" --out "$tmp/a" 2> "$tmp/a.log"
for f in model.safetensors config.json vocab.txt tokenizer_config.json hashee_finetune.json; do
  [ -s "$tmp/a/$f" ] || fail "finetune wrote no $f"
done
[ -e "$tmp/a/training-state" ] && fail "finetune left its training state behind"
grep -q "step 6/6 .*loss .*lr .*examples/s  ETA" "$tmp/a.log" || { cat "$tmp/a.log" >&2; fail "no progress line"; }
grep -q "epoch 1: train loss .*dev accuracy" "$tmp/a.log" || fail "no dev metric after epoch 1"
# hashee predict on the model agrees with transformers' logits on the same checkpoint
# (tests/data/training/hf_predict.json, from scripts/check_hf_checkpoint.py) to 1e-4.
head -21 "$elue/SST-2/dev.tsv" > "$tmp/dev20.tsv"
"$bin" predict --model "$tmp/a" --tsv "$tmp/dev20.tsv" --column sentence --output "$tmp/pred.jsonl"
python3 - "$tmp/pred.jsonl" "$(dirname "$0")/data/training/hf_predict.json" <<'PY' || fail "hashee predict strays from transformers"
import json, math, sys
preds = [json.loads(l) for l in open(sys.argv[1])]
golden = json.load(open(sys.argv[2]))
assert [p["index"] for p in preds] == list(range(golden["inputs"]))
gap = max(abs(a - b) for p, g in zip(preds, golden["logits"]) for a, b in zip(p["logits"], g))
assert gap < 1e-4, gap
for p in preds:
    assert p["label"] in ("0", "1") and abs(sum(p["probabilities"]) - 1) < 1e-9 and p["score"] == max(p["probabilities"])
PY
# hashee eval scores the fine-tuned classifier by its own predictions: dense, its accuracy is
# the one finetune measured on the same 40 dev sentences for the epoch it kept.
"$bin" eval --model "$tmp/a" --elue "$elue" --tasks sst2 --limit 40 --policies frequency --kv keep > "$tmp/eval.md" 2> /dev/null
grep -q "SST-2 dev: the fine-tuned classifier's accuracy" "$tmp/eval.md" || { cat "$tmp/eval.md" >&2; fail "eval did not score the classifier"; }
python3 - "$tmp/eval.md" "$tmp/a/hashee_finetune.json" <<'PY' || fail "eval's dense accuracy is not finetune's"
import json, sys
dense = [l for l in open(sys.argv[1]) if l.startswith("| dense |")][0].split("|")
best = json.load(open(sys.argv[2]))["best"]
assert abs(float(dense[6]) - 100 * best) < 1e-6, (dense, best)
PY
expect_error "[C11] task 'mrpc' needs a fine-tuned classifier" eval --model "$model" --elue "$elue" --tasks mrpc
# Killed mid-run (kill -9 once a training state holds step 3 or later), then resumed: the
# same model, bit for bit, as the run that was never interrupted.
"$bin" "${ft[@]}" --out "$tmp/b" --checkpoint-every 1 --quiet & pid=$!
for _ in $(seq 600); do
  if [ -s "$tmp/b/training-state/state.json" ] &&
     python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["step"] < 3)' "$tmp/b/training-state/state.json" 2> /dev/null; then
    break
  fi
  sleep 0.05
done
kill -9 "$pid" 2> /dev/null || fail "the run ended before it could be killed"
wait "$pid" 2> /dev/null || true
[ -s "$tmp/b/training-state/state.json" ] || fail "no training state to resume"
"$bin" "${ft[@]}" --out "$tmp/b" --resume 2> "$tmp/b.log"
grep -q "resumed at step [3-5]/6" "$tmp/b.log" || { cat "$tmp/b.log" >&2; fail "did not resume from its state"; }
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "the resumed run's model differs from the uninterrupted one's"
# The bi-encoder (cosine loss on STS-B pairs): a sentence-transformers directory hashee embed reads.
"$bin" finetune --model "$model" --task stsb --objective cosine --elue "$elue" --limit 32 --dev-limit 40 --epochs 1 \
  --batch-size 16 --threads 2 --out "$tmp/bi" 2> "$tmp/bi.log"
grep -q "dev pearson_spearman" "$tmp/bi.log" || { cat "$tmp/bi.log" >&2; fail "no STS-B dev metric for the bi-encoder"; }
for f in modules.json 1_Pooling/config.json sentence_bert_config.json model.safetensors; do
  [ -s "$tmp/bi/$f" ] || fail "the bi-encoder has no $f"
done
grep -q '"problem_type"' "$tmp/bi/config.json" && fail "the bi-encoder's config.json got a classifier's fields"
printf 'a cat sat\n' | "$bin" embed --model "$tmp/bi" --quiet > "$tmp/bi.jsonl"
python3 -c 'import json,sys; assert len(json.loads(open(sys.argv[1]).readline())["embedding"]) == 384' "$tmp/bi.jsonl" \
  || fail "hashee embed cannot read the fine-tuned bi-encoder"
# Bad input: a learning rate of 0, a missing column, an empty training set, a label outside the
# classes, nothing to resume, a model without a classifier given to predict.
expect_error "[E88] --lr must be a finite number above 0" "${ft[@]}" --lr 0 --out "$tmp/e1"
printf 'sentence\tlabel\na fine film\t1\na dull one\t2\n' > "$tmp/three.tsv"
printf 'sentence\tlabel\n' > "$tmp/none.tsv"
expect_error "[E18] no column 'text'" finetune --model "$model" --train "$tmp/three.tsv" --text-column text --label-column label --out "$tmp/e2"
expect_error "[E88] the training set is empty" finetune --model "$model" --train "$tmp/none.tsv" --text-column sentence --label-column label --out "$tmp/e3"
expect_error "[E28] label 2 of example 1 is outside the 2 classes" \
  finetune --model "$model" --train "$tmp/three.tsv" --text-column sentence --label-column label --num-labels 2 --out "$tmp/e4"
expect_error "[E89] no training state to resume" "${ft[@]}" --resume --out "$tmp/e5"
expect_error "[E07] not a fine-tuned classifier" predict --model "$model" --tsv "$tmp/dev20.tsv" --column sentence
for o in e1 e2 e3 e4; do [ -e "$tmp/$o/model.safetensors" ] && fail "a failed run left a model in $o"; done
echo "cli finetune: all checks passed"
exit 0
fi

# Plain lines, one a pair: one JSON line each, 384 floats, unit norm (the model normalises).
printf 'a cat sat\nhello world\tgoodbye world\n' > "$tmp/in.txt"
"$bin" embed --model "$model" --input "$tmp/in.txt" --output "$tmp/out.jsonl" --quiet
[ "$(wc -l < "$tmp/out.jsonl")" -eq 2 ] || fail "expected 2 output lines"
python3 - "$tmp/out.jsonl" <<'PY' || fail "bad JSON output"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["index"] for r in rows] == [0, 1]
for r in rows:
    assert len(r["embedding"]) == 384
    assert abs(math.sqrt(sum(x * x for x in r["embedding"])) - 1) < 1e-4
PY

# stdin and a TSV column give the same embedding for the same sentence.
head -2 "$elue/SST-2/dev.tsv" | tail -1 | cut -f1 | "$bin" embed --model "$model" --quiet > "$tmp/stdin.jsonl"
head -201 "$elue/SST-2/dev.tsv" > "$tmp/dev200.tsv"
"$bin" embed --model "$model" --tsv "$tmp/dev200.tsv" --column sentence --batch-size 7 --quiet --output "$tmp/sst.jsonl"
[ "$(wc -l < "$tmp/sst.jsonl")" -eq 200 ] || fail "expected 200 SST-2 embeddings"
python3 - "$tmp/stdin.jsonl" "$tmp/sst.jsonl" <<'PY' || fail "stdin and TSV disagree"
import json, sys
a = json.loads(open(sys.argv[1]).readline())["embedding"]
b = json.loads(open(sys.argv[2]).readline())["embedding"]
assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
PY

# Errors: non-zero status, a message naming the place, and no output file left behind.
printf 'one\ttwo\tthree\n' > "$tmp/ragged.txt"
expect_error "[E18] ragged.txt:1: expected 1 to 2" embed --model "$model" --input "$tmp/ragged.txt" --output "$tmp/o1"
printf 'ok\n\xff\xfe\n' > "$tmp/bad.txt"
expect_error "[E17] bad.txt:2: invalid UTF-8" embed --model "$model" --input "$tmp/bad.txt" --output "$tmp/o2"
expect_error "[E18] no column 'nope'" embed --model "$model" --tsv "$elue/SST-2/dev.tsv" --column nope --output "$tmp/o3"
: > "$tmp/empty.txt"
expect_error "[C04] no input lines" embed --model "$model" --input "$tmp/empty.txt" --output "$tmp/o4"
expect_error "[E12] cannot open" embed --model "$model" --input "$tmp/missing.txt" --output "$tmp/o5"
python3 -c 'print(" ".join(["word"] * 700))' > "$tmp/long.txt"
expect_error "[E13] at most 512" embed --model "$model" --input "$tmp/long.txt" --max-length 600 --output "$tmp/o6"
mkdir "$tmp/badmodel"; cp "$model/config.json" "$model/vocab.txt" "$tmp/badmodel/"
head -c 1000 "$model/model.safetensors" > "$tmp/badmodel/model.safetensors"
expect_error "[E01] model.safetensors" embed --model "$tmp/badmodel" --input "$tmp/in.txt" --output "$tmp/o7"
for o in o1 o2 o3 o4 o5 o6 o7; do
  ls "$tmp" | grep -q "^$o" && fail "left an output file behind: $o"
done
# HashEE: build a table, embed with it, evaluate.
head -301 "$elue/SST-2/train.tsv" > "$tmp/small.tsv"
"$bin" hash build --model "$model" --policy frequency --corpus "$tmp/small.tsv" --column sentence --target 1.5 \
  --out "$tmp/freq.json" 2> "$tmp/build.err"
grep -q "FLOPs speed-up 1\.[4-5]" "$tmp/build.err" || { cat "$tmp/build.err" >&2; fail "hash build missed its target"; }
python3 - "$tmp/freq.json" <<'PY' || fail "bad table file"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["format"] == "hashee-exit-table" and t["version"] == 1 and t["num_layers"] == 6
assert len(t["exits"]) == 30522 and set(t["exits"]) <= set(range(1, 7)) and min(t["exits"]) == 1
PY
"$bin" embed --model "$model" --input "$tmp/in.txt" --exit "$tmp/freq.json" --kv drop --output "$tmp/hash.jsonl" 2> "$tmp/embed.err"
grep -q "FLOPs speed-up" "$tmp/embed.err" || fail "embed --exit does not report its FLOPs speed-up"
[ "$(wc -l < "$tmp/hash.jsonl")" -eq 2 ] || fail "embed --exit: expected 2 lines"
"$bin" hash build --model "$model" --policy clustering --buckets 3 --seed 1 --out "$tmp/clu.json" 2> /dev/null
"$bin" hash build --model "$model" --policy mutual_information --corpus "$tmp/small.tsv" --column sentence \
  --label-column label --out "$tmp/mi.json" 2> /dev/null
expect_error "[C08] needs labels" hash build --model "$model" --policy mutual_information --corpus "$tmp/small.tsv" \
  --column sentence --out "$tmp/o8"
echo '{"format": "hashee-exit-table", "version": 9}' > "$tmp/bad.json"
expect_error "[E23] bad.json: unsupported version 9" embed --model "$model" --input "$tmp/in.txt" --exit "$tmp/bad.json" \
  --output "$tmp/o9"
expect_error "[E24] out of reach" hash build --model "$model" --policy frequency --corpus "$tmp/small.tsv" --column sentence \
  --target 30 --out "$tmp/o10"
for o in o8 o9 o10; do ls "$tmp" | grep -q "^$o" && fail "left an output file behind: $o"; done
# A corpus without text (no rows, or only empty texts) is refused alike by every hash that reads it.
printf 'sentence\tlabel\n' > "$tmp/header_only.tsv"
printf 'sentence\tlabel\n\t0\n\t1\n' > "$tmp/blank.tsv"
: > "$tmp/empty.tsv"
expect_error "[E70] frequency_hash: the corpus is empty" hash build --model "$model" --policy frequency \
  --corpus "$tmp/header_only.tsv" --column sentence --out "$tmp/o12"
expect_error "[E70] frequency_hash: the corpus holds no token besides the special tokens" hash build --model "$model" \
  --policy frequency --corpus "$tmp/blank.tsv" --column sentence --out "$tmp/o13"
expect_error "[E70] mutual_information_hash: the corpus holds no token besides" hash build --model "$model" \
  --policy mutual_information --corpus "$tmp/blank.tsv" --column sentence --label-column label --out "$tmp/o14"
expect_error "[E70] target_speedup: the corpus holds no token besides" hash build --model "$model" --policy random \
  --corpus "$tmp/blank.tsv" --column sentence --target 1.5 --out "$tmp/o15"
expect_error "[E18] empty.tsv" hash build --model "$model" --policy frequency --corpus "$tmp/empty.tsv" --column sentence \
  --out "$tmp/o16"
# A label that would ask for a billion classes is refused before anything is allocated.
printf 'sentence\tlabel\na cat\t0\na dog\t1000000000\n' > "$tmp/huge_label.tsv"
expect_error "[C12]" hash build --model "$model" --policy mutual_information \
  --corpus "$tmp/huge_label.tsv" --column sentence --label-column label --out "$tmp/o17"
for o in o12 o13 o14 o15 o16 o17; do ls "$tmp" | grep -q "^$o" && fail "left an output file behind: $o"; done

"$bin" eval --model "$model" --elue "$elue" --tasks stsb,sst2 --policies frequency,random_inconsistent --targets 1.5 \
  --kv keep --limit 40 --out "$tmp/report" > "$tmp/eval.md" 2> /dev/null
grep -q "| dense |" "$tmp/eval.md" || fail "eval printed no dense row"
grep -q "| random_inconsistent | keep | 1.5x |" "$tmp/eval.md" || fail "eval printed no HashEE row"
for f in hashee-results.md hashee-stsb.svg hashee-sst2.svg; do [ -s "$tmp/report/$f" ] || fail "eval did not write $f"; done

# C13: option errors (unknown option, missing value, a failed check) exit 1 with the prefix; --help 0.
"$bin" --help > /dev/null || fail "--help does not exit 0"
"$bin" embed --help > /dev/null || fail "embed --help does not exit 0"
expect_error "[C13]" embed --model "$model" --nope
expect_error "[C13]" embed --model "$model" --batch-size
expect_error "[C13]" embed --model "$model" --batch-size 0
expect_error "[C13]" embed --model "$tmp/no-such-model"
expect_error "[C13]" bogus
# C13: a non-finite number fails every numeric option's check (CLI::Range lets nan through).
expect_error "[C13]" hash build --model "$model" --policy frequency --corpus "$tmp/small.tsv" --column sentence \
  --target nan --out "$tmp/o13"
expect_error "[C13]" hash build --model "$model" --policy frequency --corpus "$tmp/small.tsv" --column sentence \
  --target inf --out "$tmp/o13"
expect_error "[C13]" eval --model "$model" --elue "$elue" --targets 1.5,nan --out "$tmp/o13"
expect_error "[C13]" eval --model "$model" --elue "$elue" --sst2-target inf --out "$tmp/o13"
expect_error "[C13]" baselines --model "$model" --elue "$elue" --learning-rate nan --out "$tmp/o13"
expect_error "[C13]" baselines --model "$model" --elue "$elue" --hash-target -inf --out "$tmp/o13"
expect_error "[C13]" embed --model "$model" --input "$tmp/in.txt" --threads nan
# C15: eval with a bad policy or key/value name fails before running: exit 1, no report.
expect_error "[C15] --policies: unknown policy 'nope'" eval --model "$model" --elue "$elue" --policies frequency,nope \
  --limit 8 --out "$tmp/o15"
expect_error "[C15]" eval --model "$model" --elue "$elue" --kv keep,maybe --limit 8 --out "$tmp/o15"
[ -e "$tmp/o15" ] && fail "eval left a report behind"
# C14 / E61: filesystem failures are typed errors naming the path, never a raw exception.
expect_error "[E61] $tmp: is a directory" embed --model "$model" --input "$tmp/in.txt" --output "$tmp" --quiet
expect_error "[E61] $tmp/no-such-dir/x.jsonl: cannot create" embed --model "$model" --input "$tmp/in.txt" \
  --output "$tmp/no-such-dir/x.jsonl" --quiet
expect_error "[C14] $tmp/in.txt" eval --model "$model" --elue "$elue" --tasks stsb --policies frequency --targets 1.5 \
  --kv keep --limit 8 --out "$tmp/in.txt"
[ -d "$tmp/no-such-dir" ] && fail "made the missing folder"
# C12: a label out of range (1e300, 3e9, -1, nan) is a typed error naming file and line.
for v in 1e300 3e9 -1 nan 1.5x; do
  printf 'sentence\tlabel\na cat\t1\nthe dog\t%s\n' "$v" > "$tmp/labels.tsv"
  expect_error "[C12] $tmp/labels.tsv:3: label '$v'" hash build --model "$model" --policy mutual_information \
    --corpus "$tmp/labels.tsv" --column sentence --label-column label --out "$tmp/o12"
done
# Stdout is held until the run succeeds: a later batch that fails leaves stdout empty (expect_error checks).
{ echo "a short line"; python3 -c 'print(" ".join(["word"] * 700))'; } > "$tmp/late.txt"
expect_error "[E13] inputs 2 to 2" embed --model "$model" --input "$tmp/late.txt" --max-length 600 --batch-size 1 --quiet
# --backend: the Thrust CPU systems give the same embeddings; cuda outside an nvcc build is a typed error.
"$bin" embed --model "$model" --input "$tmp/in.txt" --backend thrust-cpp --threads 1 --quiet > "$tmp/thrust.jsonl"
python3 - "$tmp/out.jsonl" "$tmp/thrust.jsonl" <<'PY' || fail "--backend thrust-cpp disagrees with eigen"
import json, sys
a = [json.loads(l)["embedding"] for l in open(sys.argv[1])]
b = [json.loads(l)["embedding"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 2
assert max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v)) < 1e-4
PY
expect_error "[E62] backend 'cuda'" embed --model "$model" --input "$tmp/in.txt" --backend cuda --quiet
# --precision: bf16 and int8 products stay within cosine 0.9999 and 0.98 of fp32; unknown or
# unavailable ones are E63.
for p in bf16:0.9999 int8:0.98; do
  "$bin" embed --model "$model" --input "$tmp/in.txt" --precision "${p%%:*}" --quiet > "$tmp/${p%%:*}.jsonl"
  python3 - "$tmp/out.jsonl" "$tmp/${p%%:*}.jsonl" "${p#*:}" <<'PY' || fail "--precision ${p%%:*} strays from fp32"
import json, math, sys
a = [json.loads(l)["embedding"] for l in open(sys.argv[1])]
b = [json.loads(l)["embedding"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 2
for u, v in zip(a, b):
    c = sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))
    assert float(sys.argv[3]) <= c < 1.0, c
PY
done
expect_error "[E63] unknown precision 'fp8'" embed --model "$model" --input "$tmp/in.txt" --precision fp8 --quiet
expect_error "[E63] eigen: fp16" embed --model "$model" --input "$tmp/in.txt" --precision fp16 --quiet
expect_error "[E63] thrust-cpp: bf16" embed --model "$model" --input "$tmp/in.txt" --backend thrust-cpp --precision bf16 --quiet
expect_error "[E63] thrust-omp: int8" embed --model "$model" --input "$tmp/in.txt" --backend thrust-omp --precision int8 --quiet
for o in o12 o13 o15; do ls "$tmp" | grep -q "^$o" && fail "left an output file behind: $o"; done

echo "cli: all checks passed"
