#!/usr/bin/python3
"""Exports torchvision resnet18 and mobilenet_v2 to ONNX (opset 13) for the peer tests and benchmarks.

Pretrained weights cannot be downloaded here, so the weights are torchvision's seeded random initialization. A random
network in eval mode has identity BatchNorms (running mean 0, variance 1), which makes its activation ranges
unlike a trained one's; so before export the BatchNorm running statistics are re-estimated on rendered natural-ish
scenes (textgen.render_scene, training text split), as BN re-estimation does. The result is deterministic for a given
seed.

  export_torchvision.py --out .data/models [--models resnet18,mobilenet_v2] [--seed 0] [--opset 13]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import textgen  # noqa: E402

BUILDERS = {
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
}


def reestimate_bn(model: torch.nn.Module, images: torch.Tensor, batch: int = 16) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            model(images[i:i + batch])
    model.eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--models", default="resnet18,mobilenet_v2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=13)
    p.add_argument("--bn-images", type=int, default=64, help="scenes used to re-estimate BatchNorm statistics")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    scenes = torch.from_numpy(textgen.scene_to_input(textgen.render_scene(args.bn_images, args.seed + 7, "train")))
    for name in args.models.split(","):
        if name not in BUILDERS:
            p.error(f"unknown model '{name}' (known: {', '.join(BUILDERS)})")
        torch.manual_seed(args.seed)
        model = BUILDERS[name]()
        reestimate_bn(model, scenes)
        path = os.path.join(args.out, f"{name}.onnx")
        tmp = path + ".tmp"
        dummy = torch.zeros(1, 3, textgen.SCENE_SIZE, textgen.SCENE_SIZE)
        torch.onnx.export(model, dummy, tmp, opset_version=args.opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True)
        os.replace(tmp, path)  # atomic: a half-written model never looks present
        with torch.no_grad():
            ref = model(scenes[:4]).numpy()
        print(f"{name}: {path} ({os.path.getsize(path) / 2**20:.1f} MiB), logits range "
              f"[{ref.min():.3f}, {ref.max():.3f}] on 4 scenes")


if __name__ == "__main__":
    main()
