#!/usr/bin/env bash
# Builds and runs the test suite under the sanitizers (docs/sanitizers.md), idempotently:
#  1. AddressSanitizer + UndefinedBehaviorSanitizer: the whole suite (CMake preset asan-ubsan);
#  2. ThreadSanitizer: the concurrency test (CMake preset tsan).
# Exits non-zero on any failing test and on any sanitizer report, including one from a process
# whose exit status a test does not look at (every report is also written to a log file, which
# this script checks). Environment: HASHEE_ELUE_DIR (default ../shared/data/elue),
# HASHEE_ASAN_BUILD_DIR (default build-asan), HASHEE_TSAN_BUILD_DIR (default build-tsan),
# HASHEE_SANITIZE (default "asan tsan": which of the two to run).
set -euo pipefail
cd "$(dirname "$0")/.."
model_dir=$(bash scripts/setup.sh | tail -n 1)
elue=$(bash scripts/elue_dir.sh --require)
jobs=$(nproc)
which=${HASHEE_SANITIZE:-asan tsan}

# The test presets' sanitizer options (CMakePresets.json), for a run outside the presets.
asan_options="halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:check_initialization_order=1"
ubsan_options="halt_on_error=1:print_stacktrace=1"
tsan_options="halt_on_error=1:second_deadlock_stack=1:history_size=4"

log() { printf '[sanitize] %s\n' "$*" >&2; }

# run_preset PRESET BUILD_DIR: configure, build and test one preset in BUILD_DIR. The sanitizer
# options themselves live in the test presets (CMakePresets.json); they append the parent's
# ASAN_OPTIONS/UBSAN_OPTIONS/TSAN_OPTIONS, through which this adds the report log files.
run_preset() {
  local preset=$1 dir=$2 default_dir=$3 start status=0
  start=$(date +%s)
  local reports="$PWD/$dir/sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  log "$preset: configure ($dir)"
  cmake --preset "$preset" -B "$dir" -DHASHEE_TEST_MODEL_DIR="$model_dir" -DHASHEE_TEST_ELUE_DIR="$elue"
  log "$preset: build"
  cmake --build "$dir" -j "$jobs" $([ "$preset" = tsan ] && echo --target test_concurrency)
  log "$preset: test"
  # The test preset knows only its own binaryDir (and ctest 3.25 mishandles --preset together
  # with --test-dir), so a build dir other than the preset's runs ctest directly, with the
  # preset's filter and options repeated here.
  local test_cmd=(ctest --preset "$preset" -j "$jobs")
  local opts_asan="" opts_ubsan="" opts_tsan=""
  if [ "$dir" != "$default_dir" ]; then
    test_cmd=(ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs")
    [ "$preset" = tsan ] && test_cmd+=(-R "concurrent threads")
    [ "$preset" = asan-ubsan ] && test_cmd+=(-E "^(kmeans on the real word-embedding matrix|one model shared by concurrent threads|bf16 and int8 products keep SST-2 dev|bf16 products keep STS-B dev)")
    opts_asan="$asan_options:" opts_ubsan="$ubsan_options:" opts_tsan="$tsan_options:"
  fi
  HASHEE_MODEL_DIR="$model_dir" HASHEE_ELUE_DIR="$elue" \
  ASAN_OPTIONS="${opts_asan}log_path=$reports/asan" UBSAN_OPTIONS="${opts_ubsan}log_path=$reports/ubsan" \
  TSAN_OPTIONS="${opts_tsan}log_path=$reports/tsan" \
    "${test_cmd[@]}" || status=$?
  if compgen -G "$reports/*" >/dev/null; then
    for f in "$reports"/*; do
      log "sanitizer report $f:"
      cat "$f" >&2
    done
    log "$preset: FAILED: sanitizer reports (above; kept in $reports)"
    return 1
  fi
  if [ "$status" -ne 0 ]; then
    log "$preset: FAILED: ctest exit status $status"
    return "$status"
  fi
  log "$preset: passed in $(( $(date +%s) - start )) s"
}

case " $which " in *" asan "*) run_preset asan-ubsan "${HASHEE_ASAN_BUILD_DIR:-build-asan}" build-asan ;; esac
case " $which " in *" tsan "*) run_preset tsan "${HASHEE_TSAN_BUILD_DIR:-build-tsan}" build-tsan ;; esac
log "all sanitizer runs passed"
