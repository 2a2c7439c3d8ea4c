#!/usr/bin/env bash
# Fuzzes hashee's input readers with libFuzzer (+ AddressSanitizer, UndefinedBehaviorSanitizer,
# LeakSanitizer): safetensors, config, vocab, tokenizer, exit_table, tsv (fuzz/targets.hpp).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 30)
#
# Installs clang and libFuzzer's runtime if missing (apt-get; idempotent), builds fuzz/ in
# ${HASHEE_BUILD_DIR:-build}/fuzz with clang, then runs every harness for SECONDS_PER_TARGET on a
# scratch copy of its seeds (fuzz/corpus/<target> plus fuzz/regressions/<target>; the checked-in
# corpus is never modified). Prints the executions per target. Exits non-zero when any harness
# found a crash, an uncaught non-hashee exception, a leak, undefined behaviour, a timeout or an
# out-of-memory; the input is copied to ${HASHEE_BUILD_DIR:-build}/fuzz/findings/<target>/ and
# printed. To keep a finding, copy it to fuzz/regressions/<target>/ (tests/test_fuzz_regressions
# replays it) and fix the reader.
# Environment: HASHEE_BUILD_DIR (default build), HASHEE_FUZZ_TARGETS (default: all six).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2; exit 2; }
build=${HASHEE_BUILD_DIR:-build}/fuzz
targets=${HASHEE_FUZZ_TARGETS:-safetensors config vocab tokenizer exit_table tsv}
log() { printf '[fuzz] %s\n' "$*" >&2; }

# ---- tools ----------------------------------------------------------------------------------
PACKAGES=(clang libclang-rt-14-dev cmake make libeigen3-dev nlohmann-json3-dev libutf8proc-dev)
bash scripts/apt-install.sh "${PACKAGES[@]}"
cc=clang; cxx=clang++
command -v "$cxx" >/dev/null || { cc=clang-14; cxx=clang++-14; }

# ---- build ----------------------------------------------------------------------------------
CC=$cc CXX=$cxx cmake -S fuzz -B "$build" >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

# ---- run ------------------------------------------------------------------------------------
failed=()
summary=()
for t in $targets; do
  exe="$build/fuzz_$t"
  [ -x "$exe" ] || { log "no harness fuzz_$t"; exit 2; }
  run="$build/run/$t"
  rm -rf "$run"
  mkdir -p "$run/corpus" "$run/artifacts"
  for d in "fuzz/corpus/$t" "fuzz/regressions/$t"; do
    [ -d "$d" ] || continue
    find "$d" -maxdepth 1 -type f ! -name 'README*' -exec cp {} "$run/corpus/" \;
  done
  log "$t: ${seconds}s on $(find "$run/corpus" -type f | wc -l) seeds"
  rc=0
  "$exe" "$run/corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -detect_leaks=1 -print_final_stats=1 -artifact_prefix="$run/artifacts/" \
    >"$run/fuzz.log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/fuzz.log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$run/fuzz.log" | tail -n 1)
  finds=()
  while IFS= read -r -d '' f; do finds+=("$f"); done < <(
    find "$run/artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
      -o -name 'oom-*' \) -print0)
  if [ "$rc" -ne 0 ] || [ ${#finds[@]} -gt 0 ]; then
    failed+=("$t")
    summary+=("$(printf '%-12s %12s executions  FAILED (exit %s)' "$t" "${execs:-?}" "$rc")")
    mkdir -p "$build/findings/$t"
    echo "==== $t: libFuzzer exit $rc; log $run/fuzz.log ====" >&2
    grep -E 'ERROR:|runtime error|SUMMARY|terminate called|what\(\)|^    #[0-9]+ ' "$run/fuzz.log" | head -n 40 >&2 || true
    for f in "${finds[@]}"; do
      cp "$f" "$build/findings/$t/"
      echo "---- input $build/findings/$t/$(basename "$f") ($(stat -c %s "$f") bytes):" >&2
      head -c 1024 "$f" | od -A d -c | head -n 24 >&2
    done
  else
    summary+=("$(printf '%-12s %12s executions  ok' "$t" "${execs:-?}")")
  fi
done

echo "fuzz: ${seconds}s per target (build $build)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]} (inputs under $build/findings/)" >&2
  exit 1
fi
