#!/usr/bin/python3
"""Regenerates the PyTorch fake-quant golden vectors used by tests/quant/golden_test.cpp.

    /usr/bin/python3 tests/golden/make_fake_quant_golden.py

Writes tests/golden/fake_quant_golden.json (index: one entry per case) and tests/golden/fake_quant_golden.bin
(little-endian float32: each case's input, then its expected output). Scales are stored as float32 bit patterns so
they round-trip exactly. Cases: torch.fake_quantize_per_tensor_affine and torch.fake_quantize_per_channel_affine at
2, 4, 8 and 16 bits, asymmetric unsigned grids (zero point anywhere) and symmetric signed grids (zero point 0),
channel axes 0, 1 and last; inputs include exact ties (k + 0.5) * scale, their float neighbours, grid points,
values far outside the grid, zeros and negative zeros.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 1234
# Scales whose reciprocals are inexact, so x * (1/s) and x / s disagree at some ties.
SCALES = [0.0123, 0.3, 2.5 / 255, 0.017, 1.0 / 3.0, 0.7]


def f32(v):
    return float(np.float32(v))


def bits_of(v):
    return struct.unpack("<I", struct.pack("<f", v))[0]


def probe_values(rng, n, scale, lo, hi):
    """n float32 values around the grid lo..hi (integers, relative to the zero point) of step `scale`."""
    s = np.float32(scale)
    k = rng.integers(lo - 3, hi + 4, size=n).astype(np.float32)
    kind = rng.integers(0, 7, size=n)
    ties = (k + np.float32(0.5)) * s                              # float32 product: a tie or its neighbour
    ties64 = ((k.astype(np.float64) + 0.5) * float(s)).astype(np.float32)
    x = np.where(kind == 0, ties, 0).astype(np.float32)
    x = np.where(kind == 1, ties64, x)
    x = np.where(kind == 2, np.nextafter(ties, np.float32(np.inf)), x)
    x = np.where(kind == 3, np.nextafter(ties, np.float32(-np.inf)), x)
    x = np.where(kind == 4, k * s, x)
    x = np.where(kind == 5, rng.normal(0, 1, n).astype(np.float32) * s * np.float32(hi - lo + 8), x)
    x = np.where(kind == 6, rng.uniform(-1, 1, n).astype(np.float32) * np.float32(1e3) * s * np.float32(hi - lo + 1), x)
    x[: min(n, 4)] = np.array([0.0, -0.0, s * np.float32(0.25), -s * np.float32(0.25)], dtype=np.float32)[: min(n, 4)]
    return x.astype(np.float32)


def grid(bits, signed):
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def main():
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    cases = []
    blob = bytearray()

    def add(name, x, y, shape, axis, bits, qmin, qmax, scales, zps):
        assert x.dtype == np.float32 and y.dtype == np.float32 and x.size == y.size
        entry = {
            "name": name,
            "shape": list(shape),
            "axis": axis,
            "bitwidth": bits,
            "quant_min": qmin,
            "quant_max": qmax,
            "scale_bits": [bits_of(f32(s)) for s in scales],
            "zero_point": [int(z) for z in zps],
            "input_offset": len(blob),
            "count": int(x.size),
        }
        blob.extend(x.astype("<f4").tobytes())
        entry["output_offset"] = len(blob)
        blob.extend(y.astype("<f4").tobytes())
        cases.append(entry)

    stats = {"cases": 0, "elements": 0, "divide_differs": 0}

    def emulate(x, scales, zps, qmin, qmax, axis, shape, divide):
        """numpy model of the kernels (float32 math) to report how often divide and multiply disagree."""
        s = np.asarray(scales, dtype=np.float32)
        z = np.asarray(zps, dtype=np.float64)
        xs = x.reshape(shape)
        if axis is not None:
            bshape = [1] * len(shape)
            bshape[axis] = -1
            s = s.reshape(bshape)
            z = z.reshape(bshape)
        v = xs / s if divide else xs * (np.float32(1.0) / s)
        r = np.clip(np.rint(v).astype(np.float64) + z, qmin, qmax) - z
        return (r * s.astype(np.float64)).astype(np.float32).reshape(-1)

    # Per tensor.
    for bits in (2, 4, 8, 16):
        for signed in (False, True):
            qmin, qmax = grid(bits, signed)
            for scale in SCALES[:2] if bits != 8 else SCALES:
                s = f32(scale)
                zp = 0 if signed else int(rng.integers(qmin, qmax + 1))
                n = 384
                x = probe_values(rng, n, s, qmin - zp, qmax - zp)
                y = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x.copy()), s, zp, qmin, qmax).numpy()
                name = f"per_tensor_{bits}bit_{'int_sym' if signed else 'uint_asym'}_s{scale:.4g}"
                add(name, x, y, [n], None, bits, qmin, qmax, [s], [zp])
                mul = emulate(x, [s], [zp], qmin, qmax, None, [n], False)
                div = emulate(x, [s], [zp], qmin, qmax, None, [n], True)
                if not np.array_equal(mul.view(np.uint32), y.view(np.uint32)):
                    print(f"warning: {name}: torch differs from the multiply-reciprocal model", file=sys.stderr)
                stats["divide_differs"] += int((div.view(np.uint32) != y.view(np.uint32)).sum())
                stats["cases"] += 1
                stats["elements"] += n

    # Per channel: axes 0, 1 and last.
    layouts = [([6, 40], 0), ([6, 40], 1), ([4, 5, 12], 0), ([4, 5, 12], 1), ([4, 5, 12], 2)]
    for shape, axis in layouts:
        for bits in (2, 4, 8, 16):
            for signed in (False, True):
                qmin, qmax = grid(bits, signed)
                c = shape[axis]
                scales = [f32(SCALES[int(rng.integers(0, len(SCALES)))] * float(rng.uniform(0.5, 2.0))) for _ in range(c)]
                zps = [0 if signed else int(rng.integers(qmin, qmax + 1)) for _ in range(c)]
                n = int(np.prod(shape))
                x = np.empty(shape, dtype=np.float32)
                for ch in range(c):
                    idx = [slice(None)] * len(shape)
                    idx[axis] = ch
                    m = x[tuple(idx)].size
                    x[tuple(idx)] = probe_values(rng, m, scales[ch], qmin - zps[ch], qmax - zps[ch]).reshape(
                        x[tuple(idx)].shape)
                x = x.reshape(-1)
                y = torch.fake_quantize_per_channel_affine(
                    torch.from_numpy(x.copy()).reshape(shape), torch.tensor(scales, dtype=torch.float32),
                    torch.tensor(zps, dtype=torch.int32), axis, qmin, qmax).numpy().reshape(-1)
                name = f"per_channel_{'x'.join(map(str, shape))}_axis{axis}_{bits}bit_{'int_sym' if signed else 'uint_asym'}"
                add(name, x, y, shape, axis, bits, qmin, qmax, scales, zps)
                mul = emulate(x, scales, zps, qmin, qmax, axis, shape, False)
                div = emulate(x, scales, zps, qmin, qmax, axis, shape, True)
                if not np.array_equal(mul.view(np.uint32), y.view(np.uint32)):
                    print(f"warning: {name}: torch differs from the multiply-reciprocal model", file=sys.stderr)
                stats["divide_differs"] += int((div.view(np.uint32) != y.view(np.uint32)).sum())
                stats["cases"] += 1
                stats["elements"] += n

    index = {
        "generator": "tests/golden/make_fake_quant_golden.py",
        "torch_version": torch.__version__,
        "seed": SEED,
        "data_file": "fake_quant_golden.bin",
        "layout": "little-endian float32; input at input_offset, expected output at output_offset (bytes), count each",
        "elements_where_divide_differs_from_torch": stats["divide_differs"],
        "cases": cases,
    }
    with open(os.path.join(HERE, "fake_quant_golden.bin"), "wb") as f:
        f.write(bytes(blob))
    with open(os.path.join(HERE, "fake_quant_golden.json"), "w") as f:
        # One case per line: small diffs when regenerated.
        head = {k: v for k, v in index.items() if k != "cases"}
        f.write(json.dumps(head, indent=1)[:-2] + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, separators=(",", ":")) for c in cases))
        f.write("\n ]\n}\n")
    print(f"{stats['cases']} cases, {stats['elements']} elements, {len(blob)} bytes; "
          f"{stats['divide_differs']} outputs would differ with x / scale")


if __name__ == "__main__":
    main()
