"""PyTorch's figures for benches/optim.rs: one optimizer step on a 1,000,000-element f32
parameter, one thread, the single-tensor (foreach=False) path and the default path.
Run: python3 benches/optim_pytorch.py"""
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)
N = 1_000_000


def bench(make, foreach):
    w = torch.randn(N, requires_grad=True)
    w.grad = torch.randn(N) * 1e-3
    opt = make([w], foreach)
    for _ in range(5):
        opt.step()
    times = []
    for _ in range(30):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e3


cases = {
    "sgd_momentum": lambda p, f: torch.optim.SGD(p, lr=1e-3, momentum=0.9, foreach=f),
    "adam": lambda p, f: torch.optim.Adam(p, foreach=f),
    "adamw_amsgrad": lambda p, f: torch.optim.AdamW(p, amsgrad=True, foreach=f),
    "rmsprop": lambda p, f: torch.optim.RMSprop(p, foreach=f),
    "rmsprop_centered_momentum": lambda p, f: torch.optim.RMSprop(p, momentum=0.9, centered=True, foreach=f),
    "adagrad": lambda p, f: torch.optim.Adagrad(p, foreach=f),
}
for name, make in cases.items():
    print(f"{name:28s} foreach=False {bench(make, False):7.3f} ms   foreach=True {bench(make, True):7.3f} ms")
w = torch.randn(N, requires_grad=True)
w.grad = torch.randn(N)
times = []
for _ in range(30):
    t = time.perf_counter()
    torch.nn.utils.clip_grad_norm_([w], 1e9)
    times.append(time.perf_counter() - t)
times.sort()
print(f"{'clip_grad_norm_l2':28s} {times[15] * 1e3:7.3f} ms")
