"""The PyTorch side of benches/layers.rs: the same two models, forward + backward of the sum of
the output, float32, one thread, training mode, fastest of 7 rounds in ms per step.

    python3 benches/layers_pytorch.py
"""

import time

import torch
import torch.nn as nn

torch.set_num_threads(1)
torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, E, heads, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(E)
        self.attn = nn.MultiheadAttention(E, heads, dropout=dropout, batch_first=True)
        self.ln_2 = nn.LayerNorm(E)
        self.mlp = nn.Sequential(nn.Linear(E, 4 * E), nn.GELU(), nn.Linear(4 * E, E),
                                 nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        L = x.shape[1]
        causal = torch.triu(torch.full((L, L), float("-inf")), 1)
        h = self.ln_1(x)
        x = x + self.drop(self.attn(h, h, h, attn_mask=causal, is_causal=True,
                                    need_weights=False)[0])
        return x + self.mlp(self.ln_2(x))


cnn = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1, groups=2), nn.GELU(), nn.AvgPool2d(2), nn.Flatten(),
    nn.Linear(16 * 7 * 7, 10))
block = Block(128, 4, 0.0)
block_x = torch.randn(8, 64, 128)
cnn_x = torch.randn(32, 1, 28, 28)


def fastest(steps, model, x):
    def step():
        model.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        model(xi).sum().backward()

    for _ in range(steps):
        step()
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - start) * 1e3 / steps)
    return best


b = fastest(10, block.train(), block_x)
c = fastest(10, cnn.train(), cnn_x)
print(f"pytorch threads 1 block_8x64x128 {b:.3f} ms cnn_32x1x28x28 {c:.3f} ms")
