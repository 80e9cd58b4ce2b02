#!/usr/bin/env python3
"""PyTorch's times for the kernels of `benches/vecmath.rs`: f32, 1 thread, the same sizes and input
distribution (3·N(0, 1); |x| + 1e-3 for log; g uniform in [-1, 1)), writing into a preallocated
output as the Rust kernels do (the `out=` / `grad_input=` forms: a fresh 64 MiB output would add
its page faults to every 4096² call). Run:

    python3 benches/vecmath_pytorch.py
    VECMATH_SIDES=256 python3 benches/vecmath_pytorch.py --compare   # 256² only

Prints, per kernel and size, the median and the minimum over repeated runs (on a shared machine
the minimum is the steadier figure; `benches/vecmath.rs` reports both the same way when summarised
with `python3 benches/vecmath_pytorch.py --compare`). The backward kernels are the ATen ops
autograd calls (`gelu_backward`, `softplus_backward`), and for erf the composite autograd
evaluates (g · 2/√π · exp(−x²)).
"""

import glob
import json
import math
import os
import sys
import timeit

import torch

torch.set_num_threads(1)


def kernels(x, pos, g, out):
    c = 2 / math.sqrt(math.pi)
    return {
        "exp": lambda: torch.exp(x, out=out),
        "log": lambda: torch.log(pos, out=out),
        "tanh": lambda: torch.tanh(x, out=out),
        "sigmoid": lambda: torch.sigmoid(x, out=out),
        "erf": lambda: torch.erf(x, out=out),
        "gelu": lambda: torch._C._nn.gelu(x, out=out),
        "gelu_tanh": lambda: torch._C._nn.gelu(x, approximate="tanh", out=out),
        "softplus": lambda: torch._C._nn.softplus(x, 1.0, 20.0, out=out),
        "erf_backward": lambda: torch.mul(g * c, torch.exp(-x * x), out=out),
        "gelu_backward": lambda: torch.ops.aten.gelu_backward.grad_input(
            g, x, approximate="none", grad_input=out),
        "gelu_tanh_backward": lambda: torch.ops.aten.gelu_backward.grad_input(
            g, x, approximate="tanh", grad_input=out),
        "softplus_backward": lambda: torch.ops.aten.softplus_backward.grad_input(
            g, x, 1.0, 20.0, grad_input=out),
    }


def time_torch():
    results = {}
    for side in [int(s) for s in os.environ.get("VECMATH_SIDES", "256,4096").split(",")]:
        gen = torch.Generator().manual_seed(0)
        x = 3 * torch.randn(side, side, generator=gen)
        pos = x.abs() + 1e-3
        g = torch.rand(side, side, generator=gen) * 2 - 1
        out = torch.empty_like(x)
        number = 20 if side == 256 else 1
        repeat = 50 if side == 256 else 10
        for name, fn in kernels(x, pos, g, out).items():
            fn()
            runs = sorted(t / number for t in timeit.repeat(fn, number=number, repeat=repeat))
            results[(f"{side}x{side}", name)] = (runs[len(runs) // 2], runs[0])
    return results


def criterion_times():
    """(size, kernel) → {impl: (median, min)} in seconds, from target/criterion."""
    results = {}
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")
    for path in glob.glob(os.path.join(root, "f32_*", "*", "*", "new", "sample.json")):
        parts = path.split(os.sep)
        size, impl, name = parts[-5].split("_", 1)[1], parts[-4], parts[-3]
        sample = json.load(open(path))
        per_iter = sorted(t / n / 1e9 for t, n in zip(sample["times"], sample["iters"]))
        results.setdefault((size, name), {})[impl] = (per_iter[len(per_iter) // 2], per_iter[0])
    return results


def main():
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
    torch_times = time_torch()
    if "--compare" not in sys.argv:
        print(f"{'kernel':20} {'size':>10} {'median':>12} {'min':>12}")
        for (size, name), (median, best) in torch_times.items():
            print(f"{name:20} {size:>10} {median * 1e6:9.1f} us {best * 1e6:9.1f} us")
        return
    ours = criterion_times()
    print("minimum time per call (median in parentheses); speed-ups are ratios of minima")
    print(f"{'size':10} {'kernel':20} {'vecmath':>20} {'scalar loop':>22} {'PyTorch':>22}")
    for (size, name), (t_median, t_min) in torch_times.items():
        d = ours.get((size, name), {})
        if "vecmath" not in d or "libm" not in d:
            continue
        (v_median, v_min), (l_median, l_min) = d["vecmath"], d["libm"]
        print(f"{size:10} {name:20} {v_min * 1e6:9.1f} ({v_median * 1e6:7.1f}) us "
              f"{l_min * 1e6:9.1f} us {l_min / v_min:6.1f}x "
              f"{t_min * 1e6:9.1f} us {t_min / v_min:6.2f}x")


if __name__ == "__main__":
    main()
