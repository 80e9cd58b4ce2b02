"""The PyTorch side of `benches/ops_conv.rs`: the same workloads, forward + backward in f32 with
every input requiring a gradient and the loss the sum of the output, timed the same way (the
fastest of 50 single steps after a warm-up) at 1 and 2 threads.

    python3 benches/ops_conv_pytorch.py
    CONV_BEST_OF=1 cargo bench --bench ops_conv      # the tapegrad side, same table

Not run by CI.
"""

import time

import torch
import torch.nn.functional as F


def param(*dims):
    fan_in = 1
    for d in dims[1:]:
        fan_in *= d
    std = fan_in**-0.5 if len(dims) > 1 else 1.0
    return (torch.randn(*dims) * std).requires_grad_(True)


def workloads():
    torch.manual_seed(0)
    same = dict(padding=1)
    return [
        ("conv2d_64x3x32x32_k3", [param(64, 3, 32, 32), param(32, 3, 3, 3), param(32)],
         lambda v: F.conv2d(v[0], v[1], v[2], **same)),
        ("digits_cnn_64x1x8x8",
         [param(64, 1, 8, 8), param(32, 1, 3, 3), param(32), param(64, 32, 3, 3), param(64)],
         lambda v: F.conv2d(F.max_pool2d(F.conv2d(v[0], v[1], v[2], **same).relu(), 2), v[3], v[4], **same)),
        ("conv2d_64x32x4x4_k3_digits_conv2", [param(64, 32, 4, 4), param(64, 32, 3, 3), param(64)],
         lambda v: F.conv2d(v[0], v[1], v[2], **same)),
        ("conv2d_32x16x32x32_k3_s2", [param(32, 16, 32, 32), param(32, 16, 3, 3), param(32)],
         lambda v: F.conv2d(v[0], v[1], v[2], stride=2, padding=1)),
        ("conv2d_32x32x32x32_depthwise_k3", [param(32, 32, 32, 32), param(32, 1, 3, 3), param(32)],
         lambda v: F.conv2d(v[0], v[1], v[2], padding=1, groups=32)),
        ("conv2d_32x64x16x16_k1", [param(32, 64, 16, 16), param(64, 64, 1, 1), param(64)],
         lambda v: F.conv2d(v[0], v[1], v[2])),
        ("conv1d_64x16x128_k5", [param(64, 16, 128), param(32, 16, 5), param(32)],
         lambda v: F.conv1d(v[0], v[1], v[2], padding=2)),
        ("max_pool2d_64x32x32x32_k2", [param(64, 32, 32, 32)], lambda v: F.max_pool2d(v[0], 2)),
        ("max_pool2d_64x32x32x32_k3_s2_p1", [param(64, 32, 32, 32)],
         lambda v: F.max_pool2d(v[0], 3, stride=2, padding=1)),
        ("avg_pool2d_64x32x32x32_k2", [param(64, 32, 32, 32)], lambda v: F.avg_pool2d(v[0], 2)),
        ("adaptive_avg_pool2d_64x32x32x32_to_1", [param(64, 32, 32, 32)],
         lambda v: F.adaptive_avg_pool2d(v[0], 1)),
    ]


def step(params, f):
    f(params).sum().backward()
    for p in params:
        p.grad = None


def fastest(params, f, rounds=50):
    for _ in range(5):
        step(params, f)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        step(params, f)
        best = min(best, (time.perf_counter() - start) * 1e6)
    return best


print(f"torch {torch.__version__}: fastest of 50 steps (forward + backward, f32), µs")
for name, params, f in workloads():
    times = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times.append(f"{fastest(params, f):>9.0f}")
    print(f"{name:<40} threads=1 {times[0]}  threads=2 {times[1]}")
