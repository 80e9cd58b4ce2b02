"""Golden values for the layers of tapegrad::nn, from PyTorch modules with their default
initialisation.

    python3 tests/golden/layers.py

Writes tests/golden/layers.safetensors and tests/golden/layers_cnn_state_dict.safetensors (read by
tests/layers.rs). Not run by CI.

For every case and each dtype (float32, float64; the model is built once from a fixed seed in
float32 and cast, so both dtypes hold the same weights):

  {case}.{dt}.state.{name}       the model's state_dict before anything ran
  {case}.{dt}.in.{name}          the inputs (float), {case}.ids the integer ids (int64)
  {case}.{dt}.{mode}.out         the output in mode "train" then "eval"
  {case}.{dt}.{mode}.g           the seed of the backward pass (fixed random, not ones)
  {case}.{dt}.{mode}.d.{name}    the gradient of each float input
  {case}.{dt}.{mode}.grad.{name} the gradient of each parameter
  {case}.{dt}.steps.{i}          inputs of further training forwards (models with buffers)
  {case}.{dt}.after.{name}       the buffers after the train pass and those steps
  mha_cross.{dt}.mask            the additive attention mask of the cross-attention case

The train pass runs first (updating BatchNorm's running statistics), then the further training
forwards, then the eval pass. Dropout is 0 in these models: PyTorch's random stream cannot be
replayed in Rust. `num_batches_tracked` is PyTorch's int64; it is saved as float here because
tapegrad's buffers share the model's element type.
"""

import pathlib

import torch
import torch.nn as nn
from safetensors.torch import save_file

OUT = {}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


class Block(nn.Module):
    """The pre-norm transformer block of tapegrad::nn::Block."""

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
        causal = torch.triu(torch.full((L, L), float("-inf"), dtype=x.dtype), 1)
        h = self.ln_1(x)
        a = self.attn(h, h, h, attn_mask=causal, is_causal=True, need_weights=False)[0]
        x = x + self.drop(a)
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab, E, heads, layers):
        super().__init__()
        self.wte = nn.Embedding(vocab, E, padding_idx=0)
        self.blocks = nn.ModuleList([Block(E, heads, 0.0) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(E)
        self.head = nn.Linear(E, vocab, bias=False)

    def forward(self, ids):
        x = self.wte(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def causal_mask(L, dtype):
    return torch.triu(torch.full((L, L), float("-inf"), dtype=dtype), 1)


def record(case, seed, build, inputs, run, steps=()):
    """inputs: name -> float64 tensor (requires grad) or int64 tensor (ids).
    run(model, tensors) -> output. steps: inputs (float64) of further training forwards."""
    for dt, dtype in DTYPES.items():
        torch.manual_seed(seed)
        model = build().to(dtype)
        prefix = f"{case}.{dt}"
        for k, v in model.state_dict().items():
            OUT[f"{prefix}.state.{k}"] = v.detach().clone().to(dtype)
        for mode in ("train", "eval"):
            model.train(mode == "train")
            model.zero_grad()
            tensors = {}
            for name, value in inputs.items():
                if value.dtype == torch.int64:
                    tensors[name] = value
                    OUT[f"{case}.{name}"] = value
                else:
                    tensors[name] = value.to(dtype).clone().requires_grad_(True)
                    OUT[f"{prefix}.in.{name}"] = tensors[name].detach().clone()
            out = run(model, tensors)
            gen = torch.Generator().manual_seed(seed * 10 + (mode == "eval"))
            g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
            out.backward(g)
            OUT[f"{prefix}.{mode}.out"] = out.detach()
            OUT[f"{prefix}.{mode}.g"] = g
            for name, t in tensors.items():
                if t.dtype != torch.int64:
                    OUT[f"{prefix}.{mode}.d.{name}"] = t.grad
            for name, p in model.named_parameters():
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                OUT[f"{prefix}.{mode}.grad.{name}"] = grad.detach().clone()
            if mode == "train" and steps:
                with torch.no_grad():
                    for i, s in enumerate(steps):
                        OUT[f"{prefix}.steps.{i}"] = s.to(dtype)
                        model(s.to(dtype))
                for k, v in model.named_buffers():
                    OUT[f"{prefix}.after.{k}"] = v.detach().clone().to(dtype)


def randn(*dims):
    return torch.randn(*dims, dtype=torch.float64)


torch.manual_seed(7)

# A small CNN: conv, batch norm, pooling, grouped conv without bias, tanh-GELU, flatten, linear.
def CNN():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False), nn.GELU(approximate="tanh"),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 5))


record(
    "cnn", 1,
    CNN,
    {"x": randn(3, 3, 8, 8)},
    lambda m, t: m(t["x"]),
    steps=[randn(3, 3, 8, 8) * 2 + 1, randn(5, 3, 8, 8) - 0.5],
)

# 1-D: strided dilated conv, cumulative-average batch norm, depthwise conv, activations.
record(
    "conv1d", 2,
    lambda: nn.Sequential(
        nn.Conv1d(3, 4, 3, stride=2, padding=2, dilation=2), nn.BatchNorm1d(4, momentum=None),
        nn.Tanh(), nn.Conv1d(4, 4, 1, groups=4), nn.SiLU(), nn.Flatten(), nn.Linear(20, 3),
        nn.Sigmoid()),
    {"x": randn(4, 3, 10)},
    lambda m, t: m(t["x"]),
    steps=[randn(4, 3, 10) + 1, randn(6, 3, 10) * 3],
)

# An MLP through every norm option and the remaining activations.
record(
    "mlp", 3,
    lambda: nn.Sequential(
        nn.Linear(6, 8), nn.LayerNorm(8), nn.LeakyReLU(0.2), nn.Linear(8, 8, bias=False),
        nn.Softplus(beta=2.0, threshold=1.0), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 8),
        nn.LayerNorm(8, bias=False), nn.SiLU(), nn.Linear(8, 4, bias=False),
        nn.BatchNorm1d(4, track_running_stats=False), nn.LayerNorm(4, elementwise_affine=False),
        nn.GELU()),
    {"x": randn(6, 6)},
    lambda m, t: m(t["x"]),
    steps=[randn(6, 6) + 2, randn(3, 6) * 0.5],
)

# Multi-head attention, sequence-first, self-attention.
record(
    "mha_seq", 4,
    lambda: nn.MultiheadAttention(8, 2),
    {"x": randn(5, 3, 8)},
    lambda m, t: m(t["x"], t["x"], t["x"], need_weights=False)[0],
)

# Batch-first, causal, no biases, four heads.
record(
    "mha_causal", 5,
    lambda: nn.MultiheadAttention(8, 4, bias=False, batch_first=True),
    {"x": randn(2, 6, 8)},
    lambda m, t: m(t["x"], t["x"], t["x"], attn_mask=causal_mask(6, t["x"].dtype),
                   is_causal=True, need_weights=False)[0],
)

# Cross-attention with a separate key and value and an additive mask.
cross_mask = randn(3, 5)
cross_mask[0, 1] = float("-inf")
record(
    "mha_cross", 6,
    lambda: nn.MultiheadAttention(8, 2, batch_first=True),
    {"q": randn(2, 3, 8), "k": randn(2, 5, 8), "v": randn(2, 5, 8)},
    lambda m, t: m(t["q"], t["k"], t["v"], attn_mask=cross_mask.to(t["q"].dtype),
                   need_weights=False)[0],
)

for dt, dtype in DTYPES.items():
    OUT[f"mha_cross.{dt}.mask"] = cross_mask.to(dtype)

# Unbatched [L, E], causal.
record(
    "mha_unbatched", 7,
    lambda: nn.MultiheadAttention(8, 2),
    {"x": randn(4, 8)},
    lambda m, t: m(t["x"], t["x"], t["x"], attn_mask=causal_mask(4, t["x"].dtype),
                   is_causal=True, need_weights=False)[0],
)

# A transformer block on its own, and a tiny GPT (embedding with padding, two blocks, head).
record(
    "block", 8,
    lambda: Block(8, 2, 0.0),
    {"x": randn(2, 5, 8)},
    lambda m, t: m(t["x"]),
)
record(
    "gpt", 9,
    lambda: TinyGPT(11, 8, 2, 2),
    {"ids": torch.tensor([[3, 1, 0, 7, 10, 3], [0, 0, 5, 2, 9, 1]], dtype=torch.int64)},
    lambda m, t: m(t["ids"]),
)

# The CNN's state_dict exactly as PyTorch saves it (int64 num_batches_tracked), in its own file:
# tapegrad's loader reads it directly.
torch.manual_seed(1)
save_file(CNN().state_dict(), str(pathlib.Path(__file__).with_name("layers_cnn_state_dict.safetensors")))

for k, v in list(OUT.items()):
    if k.endswith("num_batches_tracked"):
        OUT[k] = v.to(torch.float64 if ".f64." in k else torch.float32)
    OUT[k] = OUT[k].contiguous()

path = pathlib.Path(__file__).with_name("layers.safetensors")
save_file(OUT, str(path))
print(f"wrote {len(OUT)} tensors, {path.stat().st_size} bytes to {path}")
