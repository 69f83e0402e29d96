#!/usr/bin/python3
"""Renders quantsim's real-data sets for the PaddleOCR models and ImageNet-style models (no network needed).

  render_textlines.py cls   --count 2000 --seed 2 --text-source eval --out DIR   # DIR/X.npy [N,3,48,192], DIR/Y.npy [N]
  render_textlines.py rec   --count 500  --seed 3 --text-source eval --out DIR   # DIR/X.npy [N,3,48,320], Y.npy, labels.txt
  render_textlines.py det   --count 16   --seed 4 --text-source eval --out DIR   # DIR/X.npy [N,3,640,640], boxes.json
  render_textlines.py scene --count 16   --seed 5 --text-source eval --out DIR   # DIR/X.npy [N,3,224,224] (ImageNet norm)
  render_textlines.py fixtures --out tests/data/peer                              # the small committed C++ fixtures

Common options: --gray (grayscale rendering), --save-u8 (also write U8.npy/W.npy: the uint8 pixels before
normalization and the valid widths), --png N (write the first N samples as PNG into DIR/png for a look).
See docs/data.md for the preprocessing of each model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textgen  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DICT = os.path.join(REPO, ".peers", "node_modules", "@gutenye", "ocr-models", "assets", "ppocr_keys_v1.txt")

# The committed fixtures: small, grayscale (3x smaller; the C++ test replicates the channel), from the evaluation
# text. Changing these numbers changes tests/data/peer/.
FIXTURES = {
    "cls": dict(count=32, seed=1001, source="eval"),
    "rec": dict(count=8, seed=1002, source="eval"),
    "det": dict(count=1, seed=1003, source="eval"),
    "scene": dict(count=2, seed=1004, source="eval"),
}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def write_pngs(out, u8, n, widths=None):
    if n <= 0:
        return
    d = os.path.join(out, "png")
    os.makedirs(d, exist_ok=True)
    for i in range(min(n, len(u8))):
        img = u8[i]
        if widths is not None:
            img = img[:, : max(1, int(widths[i]))]
        Image.fromarray(img).save(os.path.join(d, f"{i:04d}.png"))


def meta(args, kind, **extra):
    m = dict(kind=kind, count=args.count, seed=args.seed, text_source=args.text_source,
             text_files=textgen.TEXT_SOURCES[args.text_source], gray=bool(args.gray),
             generator="examples/data/render_textlines.py")
    m.update(extra)
    return m


def cmd_cls(args):
    u8, widths, labels, texts = textgen.render_cls(args.count, args.seed, args.text_source, args.gray)
    np.save(os.path.join(args.out, "X.npy"), textgen.line_to_input(u8, widths))
    np.save(os.path.join(args.out, "Y.npy"), labels)
    if args.save_u8:
        np.save(os.path.join(args.out, "U8.npy"), u8)
        np.save(os.path.join(args.out, "W.npy"), widths)
    with open(os.path.join(args.out, "texts.txt"), "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in texts)
    write_json(os.path.join(args.out, "meta.json"), meta(
        args, "cls", input_shape=[args.count, 3, textgen.CLS_H, textgen.CLS_W], channel_order="BGR",
        normalization="(x/255-0.5)/0.5, right padding 0", labels={"0": "upright", "1": "rotated 180"}))
    write_pngs(args.out, u8, args.png, widths)


def cmd_rec(args):
    classes = textgen.load_rec_dict(args.dict)
    u8, widths, ids, texts = textgen.render_rec(args.count, args.seed, args.text_source, classes, args.gray)
    np.save(os.path.join(args.out, "X.npy"), textgen.line_to_input(u8, widths))
    np.save(os.path.join(args.out, "Y.npy"), ids)
    if args.save_u8:
        np.save(os.path.join(args.out, "U8.npy"), u8)
        np.save(os.path.join(args.out, "W.npy"), widths)
    with open(os.path.join(args.out, "labels.txt"), "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in texts)
    write_json(os.path.join(args.out, "meta.json"), meta(
        args, "rec", input_shape=[args.count, 3, textgen.REC_H, textgen.REC_W], channel_order="BGR",
        normalization="(x/255-0.5)/0.5, right padding 0", num_classes=len(classes),
        labels="labels.txt (text); Y.npy int64 class ids (blank=0, dict line k -> k+1, space last), -1 padded"))
    write_pngs(args.out, u8, args.png, widths)


def cmd_det(args):
    u8, boxes, texts = textgen.render_det(args.count, args.seed, args.text_source, args.gray)
    np.save(os.path.join(args.out, "X.npy"), textgen.page_to_input(u8))
    if args.save_u8:
        np.save(os.path.join(args.out, "U8.npy"), u8)
    write_json(os.path.join(args.out, "boxes.json"), [
        [{"box": b, "text": t} for b, t in zip(bs, ts)] for bs, ts in zip(boxes, texts)])
    write_json(os.path.join(args.out, "meta.json"), meta(
        args, "det", input_shape=[args.count, 3, textgen.DET_SIZE, textgen.DET_SIZE], channel_order="BGR",
        normalization="(x/255 - mean[c])/std[c], mean=(0.485,0.456,0.406), std=(0.229,0.224,0.225) by channel index",
        boxes="boxes.json: per page, [x0,y0,x1,y1] ink boxes of each line"))
    write_pngs(args.out, u8, args.png)


def cmd_scene(args):
    u8 = textgen.render_scene(args.count, args.seed, args.text_source)
    np.save(os.path.join(args.out, "X.npy"), textgen.scene_to_input(u8))
    if args.save_u8:
        np.save(os.path.join(args.out, "U8.npy"), u8)
    write_json(os.path.join(args.out, "meta.json"), meta(
        args, "scene", input_shape=[args.count, 3, textgen.SCENE_SIZE, textgen.SCENE_SIZE], channel_order="RGB",
        normalization="torchvision ImageNet: (x/255 - mean)/std, mean=(0.485,0.456,0.406), std=(0.229,0.224,0.225)"))
    write_pngs(args.out, u8, args.png)


def cmd_fixtures(args):
    """Small grayscale uint8 fixtures for tests/peer (the C++ tests normalize them like line_to_input etc.)."""
    out = args.out
    c = FIXTURES["cls"]
    u8, w, y, texts = textgen.render_cls(c["count"], c["seed"], c["source"], gray=True)
    np.save(os.path.join(out, "cls_u8.npy"), u8)
    np.save(os.path.join(out, "cls_width.npy"), w)
    np.save(os.path.join(out, "cls_label.npy"), y)
    c = FIXTURES["rec"]
    classes = textgen.load_rec_dict(args.dict)
    u8, w, _, texts = textgen.render_rec(c["count"], c["seed"], c["source"], classes, gray=True)
    np.save(os.path.join(out, "rec_u8.npy"), u8)
    np.save(os.path.join(out, "rec_width.npy"), w)
    with open(os.path.join(out, "rec_labels.txt"), "w", encoding="utf-8") as f:
        f.writelines(t + "\n" for t in texts)
    c = FIXTURES["det"]
    u8, _, _ = textgen.render_det(c["count"], c["seed"], c["source"], gray=True)
    np.save(os.path.join(out, "det_u8.npy"), u8)
    c = FIXTURES["scene"]
    np.save(os.path.join(out, "scene_u8.npy"), textgen.render_scene(c["count"], c["seed"], c["source"]))
    # Checksums of the model inputs the generator makes from these pixels, so the C++ tests can prove that their
    # conversion is the generator's (sum and sum of squares in float64, and a few values by flat index).
    cls = np.load(os.path.join(out, "cls_u8.npy")), np.load(os.path.join(out, "cls_width.npy"))
    rec = np.load(os.path.join(out, "rec_u8.npy")), np.load(os.path.join(out, "rec_width.npy"))
    inputs = {
        "cls": textgen.line_to_input(*cls),
        "rec": textgen.line_to_input(*rec),
        "det": textgen.page_to_input(np.load(os.path.join(out, "det_u8.npy"))),
        "scene": textgen.scene_to_input(np.load(os.path.join(out, "scene_u8.npy"))),
    }
    check = {}
    for name, x in inputs.items():
        flat = x.reshape(-1).astype(np.float64)
        idx = sorted({0, flat.size - 1} | set(int(i) for i in np.random.default_rng(7).integers(0, flat.size, 6)))
        check[name] = dict(shape=list(x.shape), sum=float(flat.sum()), sum_sq=float((flat * flat).sum()),
                           values={str(i): float(x.reshape(-1)[i]) for i in idx})
    write_json(os.path.join(out, "inputs_check.json"), check)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"fixtures written to {out} ({total / 1024:.0f} KiB)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["cls", "rec", "det", "scene", "fixtures"])
    p.add_argument("--count", type=int, default=None, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--text-source", choices=sorted(textgen.TEXT_SOURCES), default="eval",
                   help="which license files the words come from (disjoint per split)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--gray", action="store_true", help="render grayscale (channels replicated in X.npy)")
    p.add_argument("--save-u8", action="store_true", help="also write the uint8 pixels before normalization")
    p.add_argument("--png", type=int, default=0, help="write the first N samples as PNG to OUT/png")
    p.add_argument("--dict", default=DEFAULT_DICT, help="recognizer dictionary (ppocr_keys_v1.txt)")
    args = p.parse_args(argv)
    if args.kind != "fixtures":
        if args.count is None or args.count <= 0:
            p.error("--count must be a positive number")
    if args.kind in ("rec", "fixtures") and not os.path.exists(args.dict):
        p.error(f"recognizer dictionary {args.dict} not found: run 'make peers' or pass --dict")
    os.makedirs(args.out, exist_ok=True)
    {"cls": cmd_cls, "rec": cmd_rec, "det": cmd_det, "scene": cmd_scene, "fixtures": cmd_fixtures}[args.kind](args)


if __name__ == "__main__":
    main()
