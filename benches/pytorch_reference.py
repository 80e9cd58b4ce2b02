"""The PyTorch side of the speed comparison: the workloads of `examples/bench.rs`, one JSON line each.

    pip install torch
    python3 benches/pytorch_reference.py --threads 1

Not run by CI. Each workload is timed like the Rust side: warm-up steps, then the fastest of seven
rounds. Peak memory (VmHWM) is only meaningful when a workload runs alone: `--only NAME`.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F


def fastest_time(warmup, steps, step):
    for _ in range(warmup):
        step()
    rounds = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - start) * 1e6 / steps)
    return min(rounds)


def rss_kib():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def seed_manual():
    """The lesson's step with hand-written tensor gradients (no autograd)."""
    torch.manual_seed(0)
    n, d, h, k, p, lr = 128, 20, 64, 5, 0.5, 0.5
    x = torch.randn(n, d)
    y = torch.randint(0, k, (n,))
    onehot = F.one_hot(y, k).float()
    w1, b1 = torch.randn(d, h) * 0.02, torch.zeros(h)
    w2, b2 = torch.randn(h, k) * 0.02, torch.zeros(k)

    def step():
        nonlocal w1, b1, w2, b2
        z1 = x @ w1 + b1
        h1 = z1.clamp_min(0)
        mask = (torch.rand(n, h) >= p).float() / (1 - p)
        h1d = h1 * mask
        s = h1d @ w2 + b2
        prob = torch.softmax(s, dim=1)
        ds = (prob - onehot) / n
        dw2, db2 = h1d.T @ ds, ds.sum(0)
        dz1 = (ds @ w2.T) * mask * (z1 > 0)
        dw1, db1 = x.T @ dz1, dz1.sum(0)
        w1, b1, w2, b2 = w1 - lr * dw1, b1 - lr * db1, w2 - lr * dw2, b2 - lr * db2

    return fastest_time(20, 200, step), {}


def train(n, dims, lr, warmup, steps):
    torch.manual_seed(0)
    layers = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims):
            layers += [torch.nn.ReLU(), torch.nn.Dropout(0.5)]
    model = torch.nn.Sequential(*layers)
    model.train()
    x = torch.randn(n, dims[0])
    y = torch.tensor([(i * 7 + 3) % dims[-1] for i in range(n)])
    loss_fn = torch.nn.CrossEntropyLoss()
    sgd = torch.optim.SGD(model.parameters(), lr=lr)

    def step():
        sgd.zero_grad()
        loss_fn(model(x), y).backward()
        sgd.step()

    step()
    step()
    after_two, _ = rss_kib()
    for _ in range(8):
        step()
    after_ten, _ = rss_kib()
    us = fastest_time(warmup, steps, step)
    end, peak = rss_kib()
    return us, {
        "rss_growth_after_step2_kib": end - after_two,
        "rss_growth_after_step10_kib": end - after_ten,
        "peak_rss_kib": peak,
    }


def matmul_1024():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    us = fastest_time(3, 10, lambda: a @ b)
    return us, {"gflops": round(2 * 1024**3 / us / 1e3, 1)}


def dropout_4096():
    x = torch.randn(4096, 4096, requires_grad=True)
    g = torch.randn(4096, 4096)

    def step():
        x.grad = None
        F.dropout(x, 0.5, training=True).backward(g)

    return fastest_time(2, 10, step), {"saved_bytes": 4096 * 4096}  # a bool mask: one byte per element


WORKLOADS = {
    "seed_manual_200": seed_manual,
    "seed_autograd_200": lambda: train(128, [20, 64, 5], 0.5, 20, 200),
    "mlp_1024x784x1024x10": lambda: train(1024, [784, 1024, 10], 0.01, 2, 10),
    "mlp_1024x784x4096x10": lambda: train(1024, [784, 4096, 10], 0.01, 2, 10),
    "matmul_1024": matmul_1024,
    "dropout_4096x4096": dropout_4096,
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep:
        for n in [32, 128, 512, 2048]:
            for h in [64, 256, 1024]:
                us, _ = train(n, [20, h, 5], 0.1, 5, 50)
                print(json.dumps({"workload": f"sweep_n{n}_h{h}", "threads": args.threads, "us_per_step": round(us, 1)}))
        raise SystemExit(0)
    for name, run in WORKLOADS.items():
        if args.only and args.only != name:
            continue
        us, extra = run()
        print(json.dumps({"workload": name, "threads": args.threads, "us_per_step": round(us, 1), **extra}))
