"""Golden values for layer_norm, rms_norm, batch_norm and scaled_dot_product_attention, from PyTorch.

    python3 tests/golden/ops_norm_attn.py

Writes tests/golden/ops_norm_attn.safetensors (read by tests/ops_norm_attn.rs). Not run by CI.

For every case and each dtype (float32, float64) the file holds the inputs, the output, and the
gradient of every differentiable input for a backward pass seeded with a fixed random tensor `g`
(not ones). Inputs are drawn once in float64 and cast, so both dtypes see the same numbers.
Batch norm cases also hold the running statistics before and after the call. Attention runs with
dropout off (PyTorch's random stream cannot be replayed in Rust).

Names: "{case}.{dtype}.{tensor}", dtype "f32" or "f64".
"""

import pathlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(20240611)
OUT = {}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def randn(*dims):
    return torch.randn(*dims, dtype=torch.float64)


def record(case, inputs, run, extra=None):
    """inputs: name -> (float64 tensor, requires_grad). run(tensors) -> output."""
    for tag, dtype in DTYPES.items():
        tensors = {
            name: value.to(dtype).clone().requires_grad_(grad)
            for name, (value, grad) in inputs.items()
        }
        state = {k: v.to(dtype).clone() for k, v in (extra or {}).items()}
        for k, v in state.items():
            OUT[f"{case}.{tag}.{k}_before"] = v.clone()
        out = run(tensors, state)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(len(OUT)), dtype=torch.float64).to(dtype)
        out.backward(g)
        OUT[f"{case}.{tag}.g"] = g
        OUT[f"{case}.{tag}.out"] = out.detach()
        for name, t in tensors.items():
            OUT[f"{case}.{tag}.{name}"] = t.detach()
            if t.requires_grad:
                grad = t.grad if t.grad is not None else torch.zeros_like(t)
                OUT[f"{case}.{tag}.d{name}"] = grad
        for k, v in state.items():
            OUT[f"{case}.{tag}.{k}_after"] = v


# ---- layer_norm -------------------------------------------------------------------------------
record("ln_affine", {"x": (randn(4, 6), True), "w": (randn(6), True), "b": (randn(6), True)},
       lambda t, _: F.layer_norm(t["x"], (6,), t["w"], t["b"], 1e-5))
record("ln_two_axes_weight", {"x": (randn(2, 3, 4, 5), True), "w": (randn(4, 5), True)},
       lambda t, _: F.layer_norm(t["x"], (4, 5), t["w"], None, 1e-3))
record("ln_plain", {"x": (randn(3, 7) * 3 + 2, True)},
       lambda t, _: F.layer_norm(t["x"], (7,), None, None, 1e-5))
record("ln_bias_only", {"x": (randn(5, 3), True), "b": (randn(3), True)},
       lambda t, _: F.layer_norm(t["x"], (3,), None, t["b"], 0.1))
record("ln_zero_rows", {"x": (randn(0, 4), True), "w": (randn(4), True), "b": (randn(4), True)},
       lambda t, _: F.layer_norm(t["x"], (4,), t["w"], t["b"], 1e-5))

# ---- rms_norm ---------------------------------------------------------------------------------
record("rms_weight_default_eps", {"x": (randn(4, 6), True), "w": (randn(6), True)},
       lambda t, _: F.rms_norm(t["x"], (6,), t["w"]))
record("rms_two_axes", {"x": (randn(2, 3, 8), True)},
       lambda t, _: F.rms_norm(t["x"], (3, 8), None, 1e-6))

# ---- batch_norm -------------------------------------------------------------------------------
def bn(training, momentum, eps, weight=True, bias=True, stats=True):
    def run(t, state):
        return F.batch_norm(t["x"], state.get("running_mean"), state.get("running_var"),
                            t.get("w") if weight else None, t.get("b") if bias else None,
                            training, momentum, eps)
    return run


def stats(c):
    return {"running_mean": randn(c) * 0.5, "running_var": torch.rand(c, dtype=torch.float64) + 0.5}


record("bn_train_2d", {"x": (randn(8, 3) * 2 + 1, True), "w": (randn(3), True), "b": (randn(3), True)},
       bn(True, 0.1, 1e-5), stats(3))
record("bn_train_3d", {"x": (randn(4, 3, 5), True), "w": (randn(3), True), "b": (randn(3), True)},
       bn(True, 0.3, 1e-3), stats(3))
record("bn_train_4d_plain", {"x": (randn(2, 3, 2, 3), True)},
       bn(True, 0.1, 1e-5, weight=False, bias=False))
record("bn_eval_4d", {"x": (randn(4, 3, 2, 2), True), "w": (randn(3), True), "b": (randn(3), True)},
       bn(False, 0.1, 1e-5), stats(3))

# ---- scaled_dot_product_attention ---------------------------------------------------------------
def qkv(lead, l, s, e, ev):
    return {"q": (randn(*lead, l, e), True), "k": (randn(*lead, s, e), True), "v": (randn(*lead, s, ev), True)}


record("attn_plain", qkv((2, 3), 5, 6, 4, 3),
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"]))
record("attn_causal", qkv((2, 2), 6, 6, 4, 5),
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True))
record("attn_causal_long", qkv((1, 2), 70, 70, 8, 6),
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True))
record("attn_causal_more_queries", qkv((2,), 7, 4, 3, 2),
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True))
record("attn_causal_more_keys", qkv((2,), 3, 6, 3, 2),
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], is_causal=True))
record("attn_2d", qkv((), 4, 5, 3, 2),
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"]))

keep = torch.rand(5, 6) > 0.4
keep[2] = False  # a query with nothing to attend to
keep[0, 0] = True
inputs = qkv((2, 3), 5, 6, 4, 3)
inputs["keep"] = (keep.to(torch.float64), False)
record("attn_keep_mask", inputs,
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=t["keep"] != 0))

additive = randn(3, 5, 6)
additive[1, 3, :] = float("-inf")  # a fully masked row in head 1
additive[0, 0, 2] = float("-inf")
inputs = qkv((2, 3), 5, 6, 4, 3)
inputs["mask"] = (additive, True)
record("attn_additive_mask", inputs,
       lambda t, _: F.scaled_dot_product_attention(t["q"], t["k"], t["v"], attn_mask=t["mask"]))

path = pathlib.Path(__file__).with_name("ops_norm_attn.safetensors")
save_file({k: v.contiguous() for k, v in OUT.items()}, str(path))
print(f"wrote {len(OUT)} tensors, {path.stat().st_size} bytes to {path}")
