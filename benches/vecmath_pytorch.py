#!/usr/bin/env python3
"""PyTorch's times for the kernels of `benches/vecmath.rs`, f32, 1 thread, same sizes and input
distribution (3·N(0, 1); |x| + 1e-3 for log; g uniform in [-1, 1)). Run:

    python3 benches/vecmath_pytorch.py

Backward kernels are the ATen backward ops autograd calls (`gelu_backward`, `softplus_backward`),
or for erf the composite autograd evaluates (g · 2/√π · exp(−x²)).
"""

import math

import torch
import torch.nn.functional as F
import torch.utils.benchmark as benchmark

torch.set_num_threads(1)

KERNELS = {
    "exp": lambda x, g: torch.exp(x, out=OUT),
    "log": lambda x, g: torch.log(x, out=OUT),
    "tanh": lambda x, g: torch.tanh(x, out=OUT),
    "sigmoid": lambda x, g: torch.sigmoid(x, out=OUT),
    "erf": lambda x, g: torch.erf(x, out=OUT),
    "gelu": lambda x, g: F.gelu(x),
    "gelu_tanh": lambda x, g: F.gelu(x, approximate="tanh"),
    "softplus": lambda x, g: F.softplus(x),
    "erf_backward": lambda x, g: g * (2 / math.sqrt(math.pi)) * torch.exp(-x * x),
    "gelu_backward": lambda x, g: torch.ops.aten.gelu_backward(g, x),
    "gelu_tanh_backward": lambda x, g: torch.ops.aten.gelu_backward(g, x, approximate="tanh"),
    "softplus_backward": lambda x, g: torch.ops.aten.softplus_backward(g, x, 1.0, 20.0),
}

print(f"torch {torch.__version__}, {torch.get_num_threads()} thread")
print(f"{'kernel':20} {'size':>10} {'time':>12} {'ns/elem':>8}")
for side in (256, 4096):
    gen = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(side, side, generator=gen)
    positive = x.abs() + 1e-3
    g = torch.rand(side, side, generator=gen) * 2 - 1
    OUT = torch.empty_like(x)
    for name, fn in KERNELS.items():
        inp = positive if name == "log" else x
        timer = benchmark.Timer(stmt="fn(inp, g)", globals={"fn": fn, "inp": inp, "g": g})
        m = timer.blocked_autorange(min_run_time=1.0 if side > 1000 else 0.5)
        t = m.median
        print(f"{name:20} {side}x{side:<5} {t * 1e6:10.1f} us {t * 1e9 / side / side:8.2f}")
