"""The JAX side of the speed comparison: the workloads of `benches/pytorch_reference.py`, one JSON line each.

    pip install "jax[cpu]" optax
    python3 benches/jax_reference.py --threads 1
    python3 benches/jax_reference.py --threads 2 --only gpt_step

Not run by CI. Same workloads, same output (`{"workload": ..., "threads": N, "us_per_step": X, ...}`)
and same timing as the PyTorch script: warm-up steps (the first call traces and compiles; its time is
reported as "first_call_ms"), then the fastest of seven rounds. Every step ends with
`jax.block_until_ready` on everything it returns, so a step is a synchronous step like PyTorch's and
tapegrad's (async dispatch may not hide the Python overhead of one step behind the next).

Written the way JAX users write them: each step (forward, `jax.value_and_grad`, optimizer update, and the
PRNG key split for dropout) is one `jax.jit`-compiled function that takes and returns the parameters,
optimizer state and key, with those donated (`donate_argnums`) so XLA may update them in place. Losses are
computed and returned (`value_and_grad`), so XLA cannot drop the forward pass. The optimizers are optax's
(`optax.sgd`, `optax.adam`, `optax.adamw`, `optax.clip_by_global_norm`), whose formulas are PyTorch's:
bias-corrected Adam with eps added to sqrt(v_hat); AdamW's decoupled decay p -= lr * wd * p on every
parameter (no mask, like the PyTorch script); the global-norm clip differs only in PyTorch's +1e-6 in the
denominator. Dropout draws from `jax.random` with a key split every step, with JAX's default PRNG, threefry2x32,
which is slow on XLA:CPU (~20 ns per 32 random bits on one core here: most of dropout_4096x4096's time);
jax_default_prng_impl=rbg or unsafe_rbg was tried and was no faster on this CPU.
Linear and convolution parameters use PyTorch's default initialisation (U(-1/sqrt(fan_in), +)).

Layouts: the op benchmarks use PyTorch's layouts (NCHW/OIHW convolution; attention in
jax.nn.dot_product_attention's own [batch, seq, heads, head_dim] layout, the same 8x4x128x32 numbers),
the digits CNN uses NHWC/HWIO as flax users do, and the GPT's blocks are a Python list (unrolled).
layer_norm is two-pass like F.layer_norm (flax's one-pass E[x^2] - E[x]^2 form was ~13% faster here).

Threads. What limits XLA:CPU to N threads (checked with jaxlib 0.10.2 by reading per-thread CPU time in
/proc/self/task/*/stat while a jitted 2048x2048 matmul and a fused elementwise kernel run):
  - XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", the recipe from
    jax issues #743/#1539, does NOT: the matmul still ran on 3-4 busy threads.
  - threadpoolctl, OMP_NUM_THREADS, MKL_NUM_THREADS: reported ineffective (threadpoolctl issue #127);
    XLA uses its own Eigen pools. Not relied on here.
  - NPROC=N in the environment before jax is imported: jaxlib sizes its intra-op thread pools from it
    (it overrides the CPU count); with NPROC=1 the matmul ran on exactly one worker thread. The main
    Python thread still spends some CPU time (dispatch and waiting), ~15% of the kernel's time on the
    elementwise kernel.
  - the CPU affinity mask (taskset -c 0, or os.sched_setaffinity before importing jax): jaxlib also
    sizes its pools from it, and it is a hard cap: all threads share the N CPUs.
So `--threads N` here sets NPROC=N and, unless `--no-pin`, restricts the process's affinity to the first
N CPUs it may run on (both before `import jax`). `--threads 1` is then really one CPU (gpt_step
--threads 1, sampled for 8 s in steady state: one busy tf_XLAEigen thread, 0.3 s of CPU for all other
threads together, every thread's Cpus_allowed_list = 0); `--no-pin` shows the figure with only the pool
size limited. The verification can be repeated with `top -H -p PID`.
"""

import argparse
import json
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", help="run one workload (a clean peak-RSS figure needs its own process)")
    parser.add_argument("--json", action="store_true", help="accepted for symmetry; output is always JSON")
    parser.add_argument("--sweep", action="store_true", help="the lesson's MLP step over a grid of N x H")
    parser.add_argument("--no-pin", action="store_true", help="limit the pool size only, not the CPU set")
    return parser.parse_args()


ARGS = parse_args()
# Both must happen before jax (jaxlib) is imported: the thread pools are sized when the CPU client starts.
os.environ["NPROC"] = str(ARGS.threads)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if not ARGS.no_pin:
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: ARGS.threads])

from functools import partial  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax import lax  # noqa: E402


# ----------------------------------------------------------------------------------------------------
# Timing and memory (the same as pytorch_reference.py)


CPU_US = [None]


def fastest_time(warmup, steps, step):
    """Microseconds per step: `warmup` untimed steps, then the fastest of 7 rounds of `steps`."""
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
    """(VmRSS, VmHWM) of this process in KiB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def first_call(step):
    """Runs the first step (trace + compile + run) and returns its time in ms."""
    start = time.perf_counter()
    step()
    return round((time.perf_counter() - start) * 1e3, 1)


def timed_with_memory(step, warmup, steps):
    """Two steps, RSS, eight more, RSS, then fastest_time: reports RSS growth after steps 2 and 10."""
    compile_ms = first_call(step)
    step()
    after_two, _ = rss_kib()
    for _ in range(8):
        step()
    after_ten, _ = rss_kib()
    us = fastest_time(warmup, steps, step)
    end, peak = rss_kib()
    return us, {
        "first_call_ms": compile_ms,
        "rss_growth_after_step2_kib": end - after_two,
        "rss_growth_after_step10_kib": end - after_ten,
        "peak_rss_kib": peak,
    }


def timed(step, warmup, steps):
    """fastest_time after a first (compiling) call, whose time is reported."""
    compile_ms = first_call(step)
    return fastest_time(warmup, steps, step), {"first_call_ms": compile_ms}


# ----------------------------------------------------------------------------------------------------
# Building blocks


def linear_init(key, fan_in, fan_out):
    """PyTorch's nn.Linear initialisation, stored as W [in, out] (x @ W + b)."""
    kw, kb = jax.random.split(key)
    bound = 1 / fan_in**0.5
    return {
        "w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
        "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
    }


def conv_init(key, kh, kw, cin, cout):
    """PyTorch's nn.Conv2d initialisation, stored HWIO."""
    k1, k2 = jax.random.split(key)
    bound = 1 / (cin * kh * kw) ** 0.5
    return {
        "w": jax.random.uniform(k1, (kh, kw, cin, cout), jnp.float32, -bound, bound),
        "b": jax.random.uniform(k2, (cout,), jnp.float32, -bound, bound),
    }


def dropout(x, p, key):
    """Inverted dropout: zero with probability p, scale the rest by 1/(1-p)."""
    keep = jax.random.bernoulli(key, 1 - p, x.shape)
    return jnp.where(keep, x / (1 - p), 0)


def cross_entropy(logits, labels):
    """Mean cross-entropy of integer labels (F.cross_entropy)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1).mean()


def layer_norm(x, w, b, eps=1e-5):
    """F.layer_norm over the last dimension (biased variance)."""
    mean = x.mean(-1, keepdims=True)
    var = jnp.square(x - mean).mean(-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps) * w + b


def make_train_step(loss_fn, optimizer, uses_rng):
    """One jitted training step: value_and_grad, optimizer update, next PRNG key; state is donated.

    `loss_fn(params, batch, key)` (key is None when `uses_rng` is false). State is (params, opt_state,
    key); the step returns (new state, loss).
    """

    @partial(jax.jit, donate_argnums=(0,))
    def train_step(state, batch):
        params, opt_state, key = state
        if uses_rng:
            key, sub = jax.random.split(key)
        else:
            sub = None
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, sub)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, key), loss

    return train_step


def training_workload(params, loss_fn, optimizer, batch, uses_rng, warmup, steps, seed=1):
    """Times `make_train_step` from `params` on a fixed `batch`, with RSS growth and peak RSS."""
    train_step = make_train_step(loss_fn, optimizer, uses_rng)
    state = (params, optimizer.init(params), jax.random.PRNGKey(seed))
    batch = jax.device_put(batch)

    def step():
        nonlocal state
        state, loss = train_step(state, batch)
        jax.block_until_ready((state, loss))

    return timed_with_memory(step, warmup, steps)


# ----------------------------------------------------------------------------------------------------
# The existing workloads


def seed_manual():
    """The lesson's step with hand-written gradients (no autodiff), dropout mask from jax.random."""
    n, d, h, k, p, lr = 128, 20, 64, 5, 0.5, 0.5
    kx, ky, k1, k2, key = jax.random.split(jax.random.PRNGKey(0), 5)
    x = jax.random.normal(kx, (n, d))
    onehot = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, k), k)
    params = (jax.random.normal(k1, (d, h)) * 0.02, jnp.zeros(h), jax.random.normal(k2, (h, k)) * 0.02, jnp.zeros(k))

    @partial(jax.jit, donate_argnums=(0, 1))
    def manual_step(params, key, x, onehot):
        w1, b1, w2, b2 = params
        key, sub = jax.random.split(key)
        z1 = x @ w1 + b1
        h1 = jnp.maximum(z1, 0)
        mask = jax.random.bernoulli(sub, 1 - p, (n, h)).astype(jnp.float32) / (1 - p)
        h1d = h1 * mask
        s = h1d @ w2 + b2
        prob = jax.nn.softmax(s, axis=1)
        ds = (prob - onehot) / n
        dw2, db2 = h1d.T @ ds, ds.sum(0)
        dz1 = (ds @ w2.T) * mask * (z1 > 0)
        dw1, db1 = x.T @ dz1, dz1.sum(0)
        return (w1 - lr * dw1, b1 - lr * db1, w2 - lr * dw2, b2 - lr * db2), key

    def step():
        nonlocal params, key
        params, key = manual_step(params, key, x, onehot)
        jax.block_until_ready(params)

    return timed(step, 20, 200)


def mlp_init(key, dims):
    keys = jax.random.split(key, len(dims) - 1)
    return [linear_init(keys[i], dims[i], dims[i + 1]) for i in range(len(dims) - 1)]


def mlp_loss(params, batch, key):
    """Linear -> ReLU -> Dropout(0.5) -> ... -> Linear, cross-entropy."""
    x, y = batch
    for i, layer in enumerate(params):
        x = x @ layer["w"] + layer["b"]
        if i + 1 < len(params):
            key, sub = jax.random.split(key)
            x = dropout(jax.nn.relu(x), 0.5, sub)
    return cross_entropy(x, y)


def train(n, dims, lr, warmup, steps):
    """The MLP training step with SGD, like pytorch_reference.train."""
    kp, kx = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (n, dims[0]))
    y = jnp.array([(i * 7 + 3) % dims[-1] for i in range(n)], jnp.int32)
    return training_workload(mlp_init(kp, dims), mlp_loss, optax.sgd(lr), (x, y), True, warmup, steps)


def matmul_1024():
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a, b = jax.random.normal(ka, (1024, 1024)), jax.random.normal(kb, (1024, 1024))
    f = jax.jit(jnp.matmul)
    us, extra = timed(lambda: f(a, b).block_until_ready(), 3, 10)
    return us, {"gflops": round(2 * 1024**3 / us / 1e3, 1), **extra}


def dropout_4096():
    """Dropout forward + backward (a vjp with a given output gradient); returns both y and dx."""
    kx, kg, key = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (4096, 4096))
    g = jax.random.normal(kg, (4096, 4096))

    @jax.jit
    def fwd_bwd(x, g, key):
        key, sub = jax.random.split(key)
        y, vjp = jax.vjp(lambda x: dropout(x, 0.5, sub), x)
        (dx,) = vjp(g)
        return y, dx, key

    def step():
        nonlocal key
        y, dx, key = fwd_bwd(x, g, key)
        jax.block_until_ready((y, dx))

    return timed(step, 2, 10)


# ----------------------------------------------------------------------------------------------------
# The new workloads


def conv2d():
    """conv2d (NCHW, OIHW, padding 1) + bias; value_and_grad of out.sum() to input, weight and bias."""
    kx, kw, kb = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (64, 3, 32, 32))
    w = jax.random.normal(kw, (32, 3, 3, 3)) * 0.2
    b = jax.random.normal(kb, (32,)) * 0.1

    def loss(x, w, b):
        out = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return (out + b[None, :, None, None]).sum()

    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    return timed(lambda: jax.block_until_ready(f(x, w, b)), 3, 10)


def layer_norm_workload():
    """layer_norm with weight and bias; value_and_grad of (out * g).sum(), g fixed random."""
    kx, kw, kb, kg = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(kx, (4096, 768))
    w = 1 + 0.1 * jax.random.normal(kw, (768,))
    b = 0.1 * jax.random.normal(kb, (768,))
    g = jax.random.normal(kg, (4096, 768))

    f = jax.jit(jax.value_and_grad(lambda x, w, b, g: (layer_norm(x, w, b) * g).sum(), argnums=(0, 1, 2)))
    return timed(lambda: jax.block_until_ready(f(x, w, b, g)), 3, 10)


def attention():
    """jax.nn.dot_product_attention(is_causal=True); value_and_grad of out.sum() to q, k, v.

    q, k, v are [8, 128, 4, 32]: JAX's [batch, seq, heads, head_dim] layout of PyTorch's [8, 4, 128, 32].
    """
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
    q, k, v = (jax.random.normal(key, (8, 128, 4, 32)) for key in (kq, kk, kv))
    loss = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=True).sum()  # noqa: E731
    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    return timed(lambda: jax.block_until_ready(f(q, k, v)), 10, 50)


def bmm():
    """Batched matmul [64,128,64] x [64,64,128], forward only."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a, b = jax.random.normal(ka, (64, 128, 64)), jax.random.normal(kb, (64, 64, 128))
    f = jax.jit(jnp.matmul)
    us, extra = timed(lambda: f(a, b).block_until_ready(), 5, 20)
    return us, {"gflops": round(2 * 64 * 128 * 64 * 128 / us / 1e3, 1), **extra}


def makemore():
    """Karpathy's makemore MLP: C [27,10], Linear(30,200) -> tanh -> Linear(200,27), SGD lr 0.1."""
    vocab, context, emb, hidden, batch = 27, 3, 10, 200, 32
    kc, k1, k2, kx, ky = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {"C": jax.random.normal(kc, (vocab, emb)), "l1": linear_init(k1, context * emb, hidden),
              "l2": linear_init(k2, hidden, vocab)}
    X = jax.random.randint(kx, (batch, context), 0, vocab)
    Y = jax.random.randint(ky, (batch,), 0, vocab)

    def loss(params, batch_xy, _key):
        X, Y = batch_xy
        h = jnp.tanh(params["C"][X].reshape(X.shape[0], -1) @ params["l1"]["w"] + params["l1"]["b"])
        return cross_entropy(h @ params["l2"]["w"] + params["l2"]["b"], Y)

    return training_workload(params, loss, optax.sgd(0.1), (X, Y), False, 20, 200)


def digits_cnn():
    """Conv(1,32,3) -> ReLU -> MaxPool(2) -> Conv(32,64,3) -> ReLU -> Flatten -> Dropout(0.25) -> Linear.

    NHWC activations and HWIO kernels (flax's convention); Adam lr 1e-3; a fixed random batch of 64.
    """
    k1, k2, k3, kx, ky = jax.random.split(jax.random.PRNGKey(0), 5)
    params = {"c1": conv_init(k1, 3, 3, 1, 32), "c2": conv_init(k2, 3, 3, 32, 64), "fc": linear_init(k3, 64 * 4 * 4, 10)}
    x = jax.random.normal(kx, (64, 8, 8, 1))
    y = jax.random.randint(ky, (64,), 0, 10)

    def conv(x, layer):
        out = lax.conv_general_dilated(x, layer["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return out + layer["b"]

    def loss(params, batch_xy, key):
        x, y = batch_xy
        x = jax.nn.relu(conv(x, params["c1"]))
        x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        x = jax.nn.relu(conv(x, params["c2"]))
        x = dropout(x.reshape(x.shape[0], -1), 0.25, key)
        return cross_entropy(x @ params["fc"]["w"] + params["fc"]["b"], y)

    return training_workload(params, loss, optax.adam(1e-3), (x, y), True, 5, 20)


def gpt_init(key, vocab, block_size, n_layer, n_embd):
    """nanoGPT's initialisation: N(0, 0.02), c_proj scaled by 1/sqrt(2 n_layer), zero biases, unit LN."""
    std, proj_std = 0.02, 0.02 / (2 * n_layer) ** 0.5
    keys = iter(jax.random.split(key, 2 + 4 * n_layer))
    normal = lambda shape, s=std: jax.random.normal(next(keys), shape) * s  # noqa: E731
    ln = lambda: {"w": jnp.ones(n_embd), "b": jnp.zeros(n_embd)}  # noqa: E731
    blocks = [
        {
            "ln_1": ln(),
            "c_attn": {"w": normal((n_embd, 3 * n_embd)), "b": jnp.zeros(3 * n_embd)},
            "c_proj": {"w": normal((n_embd, n_embd), proj_std), "b": jnp.zeros(n_embd)},
            "ln_2": ln(),
            "c_fc": {"w": normal((n_embd, 4 * n_embd)), "b": jnp.zeros(4 * n_embd)},
            "mlp_proj": {"w": normal((4 * n_embd, n_embd), proj_std), "b": jnp.zeros(n_embd)},
        }
        for _ in range(n_layer)
    ]
    return {"wte": normal((vocab, n_embd)), "wpe": normal((block_size, n_embd)), "h": blocks, "ln_f": ln()}


def gpt_loss(params, batch, key, n_head=4, p=0.1):
    """nanoGPT forward in training mode: embeddings + dropout, pre-norm blocks, ln_f, tied lm_head, CE.

    Attention is written out (q k^T / sqrt(d), causal mask, softmax, dropout, @ v), as nanoGPT's
    non-flash path and flax's dot_product_attention do: jax.nn.dot_product_attention has no dropout.
    """
    idx, targets = batch
    B, T = idx.shape
    C = params["wte"].shape[1]
    hs = C // n_head
    keys = iter(jax.random.split(key, 1 + 3 * len(params["h"])))
    causal = jnp.tril(jnp.ones((T, T), bool))

    def linear(x, layer):
        return x @ layer["w"] + layer["b"]

    x = dropout(params["wte"][idx] + params["wpe"][:T], p, next(keys))
    for blk in params["h"]:
        h = layer_norm(x, blk["ln_1"]["w"], blk["ln_1"]["b"])
        q, k, v = jnp.split(linear(h, blk["c_attn"]), 3, axis=-1)
        q, k, v = (t.reshape(B, T, n_head, hs) for t in (q, k, v))
        att = jnp.einsum("bqhd,bkhd->bhqk", q, k) / hs**0.5
        att = jax.nn.softmax(jnp.where(causal, att, -jnp.inf), axis=-1)
        att = dropout(att, p, next(keys))
        y = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(B, T, C)
        x = x + dropout(linear(y, blk["c_proj"]), p, next(keys))
        h = layer_norm(x, blk["ln_2"]["w"], blk["ln_2"]["b"])
        h = linear(jax.nn.gelu(linear(h, blk["c_fc"]), approximate=False), blk["mlp_proj"])
        x = x + dropout(h, p, next(keys))
    x = layer_norm(x, params["ln_f"]["w"], params["ln_f"]["b"])
    logits = x @ params["wte"].T  # lm_head tied to the token embedding
    return cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))


def gpt():
    """One nanoGPT step: value_and_grad, clip_by_global_norm(1.0), AdamW(1e-3, (0.9, 0.99), wd 0.1)."""
    vocab, block_size, batch = 65, 128, 16
    kp, ki, kt = jax.random.split(jax.random.PRNGKey(0), 3)
    params = gpt_init(kp, vocab, block_size, n_layer=4, n_embd=128)
    idx = jax.random.randint(ki, (batch, block_size), 0, vocab)
    targets = jax.random.randint(kt, (batch, block_size), 0, vocab)
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, b1=0.9, b2=0.99, weight_decay=0.1))
    us, extra = training_workload(params, gpt_loss, optimizer, (idx, targets), True, 2, 3)
    return us, {"tokens_per_s": round(batch * block_size / (us * 1e-6)), **extra}


WORKLOADS = {
    "seed_manual_200": seed_manual,
    "seed_autograd_200": lambda: train(128, [20, 64, 5], 0.5, 20, 200),
    "mlp_1024x784x1024x10": lambda: train(1024, [784, 1024, 10], 0.01, 2, 10),
    "mlp_1024x784x4096x10": lambda: train(1024, [784, 4096, 10], 0.01, 2, 10),
    "matmul_1024": matmul_1024,
    "dropout_4096x4096": dropout_4096,
    "conv2d_64x3x32x32_k3": conv2d,
    "layer_norm_4096x768": layer_norm_workload,
    "attention_8x4x128x32": attention,
    "bmm_64x128x64x128": bmm,
    "makemore_step": makemore,
    "digits_cnn_step": digits_cnn,
    "gpt_step": gpt,
}


def main():
    if ARGS.sweep:
        for n in [32, 128, 512, 2048]:
            for h in [64, 256, 1024]:
                us, _ = train(n, [20, h, 5], 0.1, 5, 50)
                print(json.dumps({"workload": f"sweep_n{n}_h{h}", "threads": ARGS.threads, "us_per_step": round(us, 1)}), flush=True)
        return
    before, _ = rss_kib()
    for name, run in WORKLOADS.items():
        if ARGS.only and ARGS.only != name:
            continue
        us, extra = run()
        extra.setdefault("peak_rss_kib", rss_kib()[1])
        extra["rss_before_kib"] = before
        print(json.dumps({"workload": name, "threads": ARGS.threads, "us_per_step": round(us, 1),
                          "cpu_us_per_step": round(CPU_US[0], 1) if CPU_US[0] is not None else None, **extra}), flush=True)


if __name__ == "__main__":
    main()
