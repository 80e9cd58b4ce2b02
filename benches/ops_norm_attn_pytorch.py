"""The PyTorch side of `cargo bench --bench ops_norm_attn -- --fastest`: the same two workloads,
forward + backward in f32 with the loss the sum of the output, timed the same way (the fastest of 7
rounds of 20 steps after 20 warm-up steps), at 1 and 2 threads.

    python3 benches/ops_norm_attn_pytorch.py

Not run by CI.
"""

import time

import torch
import torch.nn.functional as F


def fastest(steps, step):
    for _ in range(steps):
        step()
    rounds = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - start) * 1e3 / steps)
    return min(rounds)


def main():
    torch.manual_seed(0)
    x = torch.randn(4096, 768, requires_grad=True)
    w = torch.randn(768, requires_grad=True)
    b = torch.randn(768, requires_grad=True)
    q, k, v = (torch.randn(8, 4, 128, 32, requires_grad=True) for _ in range(3))

    def layer_norm():
        F.layer_norm(x, (768,), w, b, 1e-5).sum().backward()
        x.grad = w.grad = b.grad = None

    def attention():
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
        q.grad = k.grad = v.grad = None

    for threads in (1, 2):
        torch.set_num_threads(threads)
        ln = fastest(20, layer_norm)
        attn = fastest(20, attention)
        print(f"pytorch  threads {threads} layer_norm_4096x768 {ln:.3f} ms attention_8x4x128x32 {attn:.3f} ms")


if __name__ == "__main__":
    main()
