"""The PyTorch side of the speed comparison: the workloads of `examples/bench.rs`, one JSON line each.

    pip install torch
    python3 benches/pytorch_reference.py --threads 1
    python3 benches/pytorch_reference.py --threads 2 --only gpt_step

Not run by CI. Each workload is timed like the Rust side: warm-up steps, then the fastest of seven
rounds. Every line carries `peak_rss_kib` (VmHWM) and `rss_before_kib` (VmRSS after the imports, before
the workload: mostly the torch library itself); both are only meaningful when a workload runs alone:
`--only NAME`. `--threads N` is `torch.set_num_threads(N)`.

The same workloads in JAX are in `benches/jax_reference.py`; `benches/compare.py` runs all three.

Workloads (f32 throughout; a "step" is what one timed iteration does):

- seed_manual_200, seed_autograd_200, mlp_*: the lesson's step and MLP training steps (SGD).
- matmul_1024: [1024,1024] @ [1024,1024], forward only.
- dropout_4096x4096: dropout(p=0.5) forward + backward with a given output gradient.
- conv2d_64x3x32x32_k3: F.conv2d, input [64,3,32,32], weight [32,3,3,3], bias [32], padding 1,
  stride 1; loss = out.sum(); backward to input, weight and bias.
- layer_norm_4096x768: F.layer_norm over the last dim of x [4096,768] with weight and bias (all three
  require grad; eps 1e-5); loss = (out * g).sum() with g a fixed random [4096,768] tensor made once,
  so the backward sees a general upstream gradient (with out.sum() it is all ones, and the input
  gradient vanishes analytically whenever the weight is uniform, e.g. at its init of ones). The
  multiply and the sum are part of the timed step, on every engine.
- attention_8x4x128x32: F.scaled_dot_product_attention(q, k, v, is_causal=True), q, k, v
  [8,4,128,32] (batch, heads, seq, head_dim) requiring grad; loss = out.sum(); backward to q, k, v.
- bmm_64x128x64x128: torch.matmul of [64,128,64] x [64,64,128], forward only, with "gflops".
- makemore_step: Karpathy's makemore MLP (vocab 27, context 3, C [27,10], Linear(30,200) -> tanh ->
  Linear(200,27)), F.cross_entropy, one fixed random batch of 32, torch.optim.SGD(lr=0.1).
- digits_cnn_step: Conv2d(1,32,3,p=1) -> ReLU -> MaxPool2d(2) -> Conv2d(32,64,3,p=1) -> ReLU ->
  Flatten -> Dropout(0.25) -> Linear(1024,10) on a fixed random batch of 64 [1,8,8] images,
  cross-entropy, torch.optim.Adam(lr=1e-3), model.train().
- gpt_step: a nanoGPT-style character model (vocab 65, block 128, 4 layers, 4 heads, n_embd 128,
  dropout 0.1, bias=True, tied lm_head), batch 16 of random ids, AdamW(1e-3, betas (0.9, 0.99),
  weight_decay 0.1 on every parameter), clip_grad_norm_(1.0); adds "tokens_per_s".

Training steps are fwd + bwd + (clip) + optimizer step + zero_grad (set_to_none, the default), with
the optimizers' defaults (on CPU that is the per-parameter for-loop implementation, neither foreach
nor fused). Each training workload also reports RSS growth after step 2 and after step 10.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn


CPU_US = [None]


def fastest_time(warmup, steps, step):
    for _ in range(warmup):
        step()
    rounds, cpu_rounds = [], []
    for _ in range(7):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - start) * 1e6 / steps)
        cpu_rounds.append((time.process_time() - cpu_start) * 1e6 / steps)
    # CPU time of all the process's threads per step (fastest round): on a shared machine wall
    # time includes other jobs' time slices, CPU time does not (examples/bench.rs reports the same).
    CPU_US[0] = min(cpu_rounds)
    return min(rounds)


def rss_kib():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def timed_with_memory(step, warmup, steps):
    """Two steps, RSS, eight more, RSS, then fastest_time: reports RSS growth after steps 2 and 10."""
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

    return timed_with_memory(step, warmup, steps)


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


def conv2d():
    """conv2d forward + backward to input, weight and bias; loss = out.sum()."""
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32, requires_grad=True)
    w = (torch.randn(32, 3, 3, 3) * 0.2).requires_grad_()
    b = (torch.randn(32) * 0.1).requires_grad_()

    def step():
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, stride=1, padding=1).sum().backward()

    return fastest_time(3, 10, step), {}


def layer_norm():
    """layer_norm forward + backward to x, weight and bias; loss = (out * g).sum(), g fixed random.

    The weight and bias are random (not ones/zeros) so that no gradient is trivially zero.
    """
    torch.manual_seed(0)
    x = torch.randn(4096, 768, requires_grad=True)
    w = (1 + 0.1 * torch.randn(768)).requires_grad_()
    b = (0.1 * torch.randn(768)).requires_grad_()
    g = torch.randn(4096, 768)

    def step():
        x.grad = w.grad = b.grad = None
        (F.layer_norm(x, (768,), w, b, eps=1e-5) * g).sum().backward()

    return fastest_time(3, 10, step), {}


def attention():
    """Causal scaled-dot-product attention forward + backward to q, k, v; loss = out.sum()."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(8, 4, 128, 32, requires_grad=True) for _ in range(3))

    def step():
        q.grad = k.grad = v.grad = None
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()

    return fastest_time(10, 50, step), {}


def bmm():
    """Batched matmul [64,128,64] x [64,64,128], forward only."""
    torch.manual_seed(0)
    a, b = torch.randn(64, 128, 64), torch.randn(64, 64, 128)
    us = fastest_time(5, 20, lambda: torch.matmul(a, b))
    return us, {"gflops": round(2 * 64 * 128 * 64 * 128 / us / 1e3, 1)}


def makemore():
    """Karpathy's makemore MLP: one SGD training step on a fixed random batch of 32 contexts."""
    torch.manual_seed(0)
    vocab, context, emb, hidden, batch = 27, 3, 10, 200, 32
    C = nn.Parameter(torch.randn(vocab, emb))
    mlp = nn.Sequential(nn.Linear(context * emb, hidden), nn.Tanh(), nn.Linear(hidden, vocab))
    params = [C, *mlp.parameters()]
    X = torch.randint(0, vocab, (batch, context))
    Y = torch.randint(0, vocab, (batch,))
    sgd = torch.optim.SGD(params, lr=0.1)

    def step():
        logits = mlp(C[X].view(batch, context * emb))
        F.cross_entropy(logits, Y).backward()
        sgd.step()
        sgd.zero_grad()

    return timed_with_memory(step, 20, 200)


def digits_cnn():
    """A small CNN on 8x8 digit-sized images: one Adam training step on a fixed random batch of 64."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(64 * 4 * 4, 10),
    )
    model.train()
    x = torch.randn(64, 1, 8, 8)
    y = torch.randint(0, 10, (64,))
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        F.cross_entropy(model(x), y).backward()
        adam.step()
        adam.zero_grad()

    return timed_with_memory(step, 5, 20)


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one c_attn Linear for q, k, v, SDPA with dropout, c_proj, residual dropout."""

    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=True)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=True)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with exact GELU."""

    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=True)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd, bias=True)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd, bias=True),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd, bias=True),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT: token + learned position embeddings, dropout, blocks, final LayerNorm, tied lm_head."""

    def __init__(self, vocab, block_size, n_layer, n_head, n_embd, dropout):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=True)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying, as nanoGPT does it
        # nanoGPT's initialisation: N(0, 0.02), zero biases, c_proj scaled by 1/sqrt(2 n_layer).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, 0.0, 0.02 / (2 * n_layer) ** 0.5)
            elif p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias") and "ln" not in name:
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def gpt():
    """One nanoGPT training step: fwd + bwd + clip_grad_norm_ + AdamW step + zero_grad.

    AdamW decays every parameter (nanoGPT exempts biases and LayerNorm weights; the cost is the same).
    """
    torch.manual_seed(0)
    vocab, block_size, batch = 65, 128, 16
    model = GPT(vocab, block_size, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
    model.train()
    idx = torch.randint(0, vocab, (batch, block_size))
    targets = torch.randint(0, vocab, (batch, block_size))
    params = list(model.parameters())  # the tied weight appears once
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        model(idx, targets).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()

    us, extra = timed_with_memory(step, 2, 3)
    return us, {"tokens_per_s": round(batch * block_size / (us * 1e-6)), **extra}


WORKLOADS = {
    "seed_manual_200": seed_manual,
    "seed_autograd_200": lambda: train(128, [20, 64, 5], 0.5, 20, 200),
    "mlp_1024x784x1024x10": lambda: train(1024, [784, 1024, 10], 0.01, 2, 10),
    "mlp_1024x784x4096x10": lambda: train(1024, [784, 4096, 10], 0.01, 2, 10),
    "matmul_1024": matmul_1024,
    "dropout_4096x4096": dropout_4096,
    "conv2d_64x3x32x32_k3": conv2d,
    "layer_norm_4096x768": layer_norm,
    "attention_8x4x128x32": attention,
    "bmm_64x128x64x128": bmm,
    "makemore_step": makemore,
    "digits_cnn_step": digits_cnn,
    "gpt_step": gpt,
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
    before, _ = rss_kib()
    for name, run in WORKLOADS.items():
        if args.only and args.only != name:
            continue
        us, extra = run()
        extra.setdefault("peak_rss_kib", rss_kib()[1])
        extra["rss_before_kib"] = before
        print(json.dumps({"workload": name, "threads": args.threads, "us_per_step": round(us, 1),
                          "cpu_us_per_step": round(CPU_US[0], 1) if CPU_US[0] is not None else None, **extra}), flush=True)
