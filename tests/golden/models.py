"""Golden training trajectories of the example models, from PyTorch (run by hand, not by CI).

    python3 tests/golden/models.py   # writes tests/golden/models.safetensors

makemore (examples/makemore/model.rs): embedding table [27, 10] -> Linear(30, 200) -> tanh ->
Linear(200, 27) -> cross-entropy, SGD lr 0.1, batch 32, five steps on fixed batches. Recorded:
the initial parameters (`makemore.init.<name>`), each step's batch (`makemore.x<k>` int64 [32, 3],
`makemore.y<k>` int64 [32]) and loss (`makemore.loss<k>`), the first step's gradients
(`makemore.grad0.<name>`) and the parameters after the last step (`makemore.final.<name>`), in
f32. The parameter names are the model's state_dict names, which tapegrad's model shares.

digits CNN (examples/digits_cnn/model.rs): Conv2d(1, 32, 3, padding 1) -> ReLU -> MaxPool2d(2) ->
Conv2d(32, 64, 3, padding 1) -> ReLU -> Flatten -> Dropout(0.25) -> Linear(1024, 10), Adam lr 1e-3,
five steps on batches of 64 random 8x8 images in [0, 1) with dropout off (eval mode). Recorded
under `cnn.` as for makemore (`cnn.x<k>` is f32 [64, 64]).

GPT (examples/gpt/model.rs) at a small size: vocabulary 65, context 16, 2 pre-norm blocks of 2
heads and 32 dimensions, dropout off, the head tied to the token embedding; AdamW (lr 1e-3, betas
(0.9, 0.99), weight decay 0.1 on every parameter), gradients clipped to norm 1, five steps on
batches of 4 random windows. Recorded under `gpt.` (`gpt.x<k>`, `gpt.y<k>` int64 [4, 16]).
"""
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}


class Makemore(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(27, 10))
        self.hidden = nn.Linear(30, 200)
        self.out = nn.Linear(200, 27)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(self.table[x].view(-1, 30))))


model = Makemore()
for name, p in model.state_dict().items():
    out[f"makemore.init.{name}"] = p.detach().clone()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for k in range(5):
    x = torch.randint(0, 27, (32, 3))
    y = torch.randint(0, 27, (32,))
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if k == 0:
        for name, p in model.named_parameters():
            out[f"makemore.grad0.{name}"] = p.grad.detach().clone()
    opt.step()
    out[f"makemore.x{k}"] = x
    out[f"makemore.y{k}"] = y
    out[f"makemore.loss{k}"] = loss.detach().reshape(1)
for name, p in model.state_dict().items():
    out[f"makemore.final.{name}"] = p.detach().clone()

cnn = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.25),
    nn.Linear(1024, 10),
).eval()
for name, p in cnn.state_dict().items():
    out[f"cnn.init.{name}"] = p.detach().clone()
opt = torch.optim.Adam(cnn.parameters(), lr=1e-3)
for k in range(5):
    x = torch.rand(64, 64)
    y = torch.randint(0, 10, (64,))
    opt.zero_grad()
    loss = F.cross_entropy(cnn(x.view(64, 1, 8, 8)), y)
    loss.backward()
    if k == 0:
        for name, p in cnn.named_parameters():
            out[f"cnn.grad0.{name}"] = p.grad.detach().clone()
    opt.step()
    out[f"cnn.x{k}"] = x
    out[f"cnn.y{k}"] = y
    out[f"cnn.loss{k}"] = loss.detach().reshape(1)
for name, p in cnn.state_dict().items():
    out[f"cnn.final.{name}"] = p.detach().clone()

class Block(nn.Module):
    """tapegrad::nn::Block: pre-norm causal self-attention and a GELU MLP, each residual."""

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
        a = self.attn(h, h, h, attn_mask=causal, is_causal=True, need_weights=False)[0]
        x = x + self.drop(a)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab, block, layers, heads, E, dropout):
        super().__init__()
        self.tok = nn.Embedding(vocab, E)
        self.pos = nn.Embedding(block, E)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(E, heads, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(E)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, ids):
        L = ids.shape[1]
        x = self.drop(self.tok(ids) + self.pos(torch.arange(L)))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok.weight.T


gpt = GPT(65, 16, 2, 2, 32, 0.0).train()
for name, p in gpt.state_dict().items():
    out[f"gpt.init.{name}"] = p.detach().clone()
params = list(gpt.parameters())
opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
for k in range(5):
    x = torch.randint(0, 65, (4, 16))
    y = torch.randint(0, 65, (4, 16))
    opt.zero_grad()
    loss = F.cross_entropy(gpt(x).reshape(-1, 65), y.reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    if k == 0:
        for name, p in gpt.named_parameters():
            out[f"gpt.grad0.{name}"] = p.grad.detach().clone()
    opt.step()
    out[f"gpt.x{k}"] = x
    out[f"gpt.y{k}"] = y
    out[f"gpt.loss{k}"] = loss.detach().reshape(1)
for name, p in gpt.state_dict().items():
    out[f"gpt.final.{name}"] = p.detach().clone()

path = pathlib.Path(__file__).with_name("models.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, str(path))
print(f"wrote {len(out)} tensors to {path}")
