#!/usr/bin/python3
"""Checks the generated sets against the FP32 PaddleOCR models run by ONNX Runtime (scripts/peers/ort_run.js):

  classifier:  accuracy on DATA/cls/eval (upright vs rotated 180)
  recognizer:  greedy CTC decode of DATA/rec/eval, character accuracy (1 - edit distance / length) and exact lines
  detector:    on DATA/det/eval, the share of rendered lines the probability map finds (> 0.3 on >= 20% of the
               line's box; DB maps are shrunk text kernels) and the share of detected pixels inside a line box

  check_models.py [--data .data] [--threads 2] [--json OUT.json]
Exits 1 if the classifier is below 90% or the recognizer's character accuracy below 90%.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textgen  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ASSETS = os.path.join(REPO, ".peers", "node_modules", "@gutenye", "ocr-models", "assets")
ORT_RUN = os.path.join(REPO, "scripts", "peers", "ort_run.js")


def ort(model, x_path, out_path, threads, batch):
    cmd = ["node", ORT_RUN, "--model", model, "--input", x_path, "--output", out_path, "--threads", str(threads),
           "--batch", str(batch)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"ort_run.js failed ({r.returncode}): {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def ctc_greedy(probs: np.ndarray, classes: list[str]) -> list[str]:
    out = []
    for seq in probs.argmax(axis=2):
        s, prev = [], 0
        for k in seq:
            if k != prev and k != 0:
                s.append(classes[k])
            prev = k
        out.append("".join(s))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(REPO, ".data"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Classifier
        d = os.path.join(args.data, "cls", "eval")
        t = ort(os.path.join(ASSETS, "ch_ppocr_mobile_v2.0_cls_infer.onnx"), os.path.join(d, "X.npy"),
                os.path.join(tmp, "cls.npy"), args.threads, 32)
        pred = np.load(os.path.join(tmp, "cls.npy")).argmax(1)
        y = np.load(os.path.join(d, "Y.npy"))
        res["cls"] = dict(n=int(len(y)), accuracy=float((pred == y).mean()),
                          accuracy_upright=float((pred[y == 0] == 0).mean()),
                          accuracy_rotated=float((pred[y == 1] == 1).mean()), ort_run_ms=t["run_ms"])
        # Recognizer
        d = os.path.join(args.data, "rec", "eval")
        t = ort(os.path.join(ASSETS, "ch_PP-OCRv4_rec_infer.onnx"), os.path.join(d, "X.npy"),
                os.path.join(tmp, "rec.npy"), args.threads, 8)
        classes = textgen.load_rec_dict(os.path.join(ASSETS, "ppocr_keys_v1.txt"))
        decoded = ctc_greedy(np.load(os.path.join(tmp, "rec.npy")), classes)
        with open(os.path.join(d, "labels.txt"), encoding="utf-8") as f:
            labels = [line.rstrip("\n") for line in f]
        # The margins around a crop decode as leading/trailing spaces (PaddleOCR keeps them); compare stripped.
        errs = sum(edit_distance(a.strip(), b) for a, b in zip(decoded, labels))
        chars = sum(len(b) for b in labels)
        res["rec"] = dict(n=len(labels), char_accuracy=1.0 - errs / chars,
                          exact_lines=float(np.mean([a.strip() == b for a, b in zip(decoded, labels)])),
                          ort_run_ms=t["run_ms"])
        res["rec"]["examples"] = [dict(text=b, read=a) for a, b in zip(decoded, labels) if a.strip() != b][:5]
        # Detector
        d = os.path.join(args.data, "det", "eval")
        t = ort(os.path.join(ASSETS, "ch_PP-OCRv4_det_infer.onnx"), os.path.join(d, "X.npy"),
                os.path.join(tmp, "det.npy"), args.threads, 1)
        prob = np.load(os.path.join(tmp, "det.npy"))
        with open(os.path.join(d, "boxes.json"), encoding="utf-8") as f:
            boxes = json.load(f)
        found = total = inside = detected = 0
        for i, page in enumerate(boxes):
            hot = prob[i, 0] > 0.3
            mask = np.zeros_like(hot)
            for e in page:
                x0, y0, x1, y1 = e["box"]
                mask[y0:y1, x0:x1] = True
                total += 1
                found += hot[y0:y1, x0:x1].mean() >= 0.2
            inside += (hot & mask).sum()
            detected += hot.sum()
        res["det"] = dict(pages=len(boxes), lines=total, line_recall=found / max(1, total),
                          pixel_precision=float(inside / max(1, detected)), ort_run_ms=t["run_ms"])
    print(json.dumps(res, indent=1, ensure_ascii=False))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, ensure_ascii=False)
    ok = res["cls"]["accuracy"] > 0.9 and res["rec"]["char_accuracy"] > 0.9
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
