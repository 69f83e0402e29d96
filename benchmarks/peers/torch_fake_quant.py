#!/usr/bin/python3
"""PyTorch fake-quant throughput, side by side with benchmarks/bench_fake_quant.cpp (same sizes, threads, units).

    /usr/bin/python3 benchmarks/peers/torch_fake_quant.py [--repeat 5] [--threads 1,2]

GB/s counts read + write (8 bytes per float element), like the memcpy baseline and quantsim's benchmark.
Cases: torch.fake_quantize_per_tensor_affine (int8 symmetric) and torch.fake_quantize_per_channel_affine
(uint8 asymmetric, 256 channels) with the channel axis outermost ([256, n/256], axis 0) and innermost
([n/256, 256], axis 1), for 16M (DRAM) and 1M (cache-resident) floats, plus a torch tensor copy as torch's own
memory baseline. Each figure is the best of --repeat timeit runs.
"""
import argparse
import timeit

import torch

BIG = 1 << 24
CACHED = 1 << 20


def gbps(nbytes, seconds):
    return nbytes / seconds / 1e9


def best_time(fn, repeat, min_time=0.2):
    fn()  # warm up (allocator, first touch)
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t >= min_time or number >= 1 << 16:
            break
        number *= 2
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    torch.manual_seed(1)
    print(f"torch {torch.__version__}; GB/s = 8 bytes per element / time (read + write)")
    print(f"{'case':<44}{'n':>10}{'threads':>8}{'ms':>10}{'GB/s':>8}")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for n in (BIG, CACHED):
            x = torch.randn(n)
            out = torch.empty_like(x)
            c = 256
            scales = 0.01 + 0.0001 * (torch.arange(c) % 97).float()
            zps = (torch.arange(c) % 256).int()
            xo = x.reshape(c, n // c)
            xi = x.reshape(n // c, c)
            cases = [
                ("copy (torch memory baseline)", lambda: out.copy_(x)),
                ("fake_quantize_per_tensor_affine int8", lambda: torch.fake_quantize_per_tensor_affine(x, 0.0173, 0, -128, 127)),
                ("fake_quantize_per_channel_affine axis 0", lambda: torch.fake_quantize_per_channel_affine(xo, scales, zps, 0, 0, 255)),
                ("fake_quantize_per_channel_affine axis 1", lambda: torch.fake_quantize_per_channel_affine(xi, scales, zps, 1, 0, 255)),
            ]
            for name, fn in cases:
                t = best_time(fn, args.repeat)
                print(f"{name:<44}{n:>10}{threads:>8}{t * 1e3:>10.3f}{gbps(8 * n, t):>8.2f}", flush=True)


if __name__ == "__main__":
    main()
