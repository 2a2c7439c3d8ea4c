#!/usr/bin/env bash
# Prints the ELUE task data directory the scripts read: $HASHEE_ELUE_DIR if set, else the
# team's copy beside the checkout (../shared/data/elue). With --require, a directory without
# SST-2/train.tsv is an error that says how to point the scripts at the data.
set -euo pipefail
dir=${HASHEE_ELUE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data/elue}
if [ "${1:-}" = --require ] && [ ! -f "$dir/SST-2/train.tsv" ]; then
  echo "hashee: the ELUE data is not at $dir (no SST-2/train.tsv there);" \
       "set HASHEE_ELUE_DIR to the directory holding SST-2/, MRPC/, STS-B/, ..." >&2
  exit 2
fi
echo "$dir"
