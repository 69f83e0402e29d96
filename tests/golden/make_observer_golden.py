#!/usr/bin/python3
"""Golden vectors for quantsim's min-max observers, computed with PyTorch's own observers.

Writes tests/golden/observer_golden.json (checked by tests/observers/golden_test.cpp):
  - MinMaxObserver, PerChannelMinMaxObserver (axis 0, 1, last): quint8/qint8, affine/symmetric
  - MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver (averaging_constant 0.01 and 0.25)
Every float is a float32 value written as the exact decimal of its double (round-trips bit for bit).

Run: /usr/bin/python3 tests/golden/make_observer_golden.py   (torch 1.13)
"""
import json
import os
import re

import torch
from torch.ao.quantization.observer import (MinMaxObserver, MovingAverageMinMaxObserver,
                                            MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver)

torch.manual_seed(20240611)

PER_TENSOR = [(torch.quint8, torch.per_tensor_affine), (torch.qint8, torch.per_tensor_affine),
              (torch.quint8, torch.per_tensor_symmetric), (torch.qint8, torch.per_tensor_symmetric)]
PER_CHANNEL = [(torch.quint8, torch.per_channel_affine), (torch.qint8, torch.per_channel_affine),
               (torch.quint8, torch.per_channel_symmetric), (torch.qint8, torch.per_channel_symmetric)]


def floats(t):
    return [float(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def dname(d):
    return {torch.quint8: "quint8", torch.qint8: "qint8"}[d]


def sname(s):
    return {torch.per_tensor_affine: "affine", torch.per_tensor_symmetric: "symmetric",
            torch.per_channel_affine: "affine", torch.per_channel_symmetric: "symmetric"}[s]


def tensor_sets():
    f = torch.float32
    return {
        "randn": torch.randn(97, dtype=f) * 3 + 0.5,
        "uniform_positive": torch.rand(64, dtype=f) * 4.9 + 0.1,
        "all_negative": -(torch.rand(40, dtype=f) * 7 + 0.25),
        "constant": torch.full((16,), 2.5, dtype=f),
        "tiny": torch.randn(32, dtype=f) * 1e-9,
        "wide": torch.cat([torch.randn(50, dtype=f), torch.tensor([1.0e4, -3.0e3, 0.0], dtype=f)]),
        "single": torch.tensor([-0.7], dtype=f),
        "zeros": torch.zeros(8, dtype=f),
    }


def channel_sets():
    f = torch.float32
    return [
        ("conv_weight", torch.randn(4, 6, dtype=f) * torch.tensor([[0.1], [1.0], [5.0], [0.01]]), 0),
        ("axis1", torch.randn(3, 5, 2, dtype=f) * 2 - 0.3, 1),
        ("last_axis", torch.rand(2, 3, 4, dtype=f) * 3 - 1, 2),
        ("first_of_3d", torch.randn(2, 3, 4, dtype=f), 0),
        ("dead_channel", torch.cat([torch.zeros(1, 5), torch.randn(2, 5)]).to(f), 0),
    ]


def main():
    out = {"torch_version": torch.__version__, "per_tensor": [], "per_channel": [], "moving_average": [],
           "moving_average_per_channel": []}
    for name, x in tensor_sets().items():
        entry = {"name": name, "data": floats(x), "cases": []}
        for dtype, qscheme in PER_TENSOR:
            obs = MinMaxObserver(dtype=dtype, qscheme=qscheme)
            obs(x)
            s, z = obs.calculate_qparams()
            entry["cases"].append({"dtype": dname(dtype), "qscheme": sname(qscheme), "min": float(obs.min_val),
                                   "max": float(obs.max_val), "scale": float(s), "zero_point": int(z)})
        out["per_tensor"].append(entry)

    for name, x, axis in channel_sets():
        entry = {"name": name, "shape": list(x.shape), "axis": axis, "data": floats(x), "cases": []}
        for dtype, qscheme in PER_CHANNEL:
            obs = PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=qscheme)
            obs(x)
            s, z = obs.calculate_qparams()
            entry["cases"].append({"dtype": dname(dtype), "qscheme": sname(qscheme), "scale": floats(s),
                                   "zero_point": [int(v) for v in z.tolist()]})
        out["per_channel"].append(entry)

    for c in (0.01, 0.25):
        batches = [torch.randn(40) * (1 + i) + 0.2 * i for i in range(6)]
        entry = {"name": "drifting_%g" % c, "averaging_constant": c, "batches": [floats(b) for b in batches],
                 "cases": []}
        for dtype, qscheme in PER_TENSOR:
            obs = MovingAverageMinMaxObserver(averaging_constant=c, dtype=dtype, qscheme=qscheme)
            for b in batches:
                obs(b)
            s, z = obs.calculate_qparams()
            entry["cases"].append({"dtype": dname(dtype), "qscheme": sname(qscheme), "min": float(obs.min_val),
                                   "max": float(obs.max_val), "scale": float(s), "zero_point": int(z)})
        out["moving_average"].append(entry)

    for c in (0.01, 0.25):
        batches = [torch.randn(3, 8) * torch.tensor([[0.5], [2.0], [7.0]]) + 0.1 * i for i in range(5)]
        entry = {"name": "per_channel_%g" % c, "averaging_constant": c, "shape": [3, 8], "axis": 0,
                 "batches": [floats(b) for b in batches], "cases": []}
        for dtype, qscheme in PER_CHANNEL:
            obs = MovingAveragePerChannelMinMaxObserver(ch_axis=0, averaging_constant=c, dtype=dtype,
                                                        qscheme=qscheme)
            for b in batches:
                obs(b)
            s, z = obs.calculate_qparams()
            entry["cases"].append({"dtype": dname(dtype), "qscheme": sname(qscheme), "scale": floats(s),
                                   "zero_point": [int(v) for v in z.tolist()]})
        out["moving_average_per_channel"].append(entry)

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "observer_golden.json")
    text = json.dumps(out, indent=1)
    # One line per number list keeps the file small and diffs readable.
    text = re.sub(r"\[\s*([-0-9.e+,\s]*?)\s*\]", lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]",
                  text)
    with open(path, "w") as f:
        f.write(text + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
