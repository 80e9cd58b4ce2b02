"""Golden values for the losses of tapegrad::nn (src/nn/loss.rs), from PyTorch.

    python3 tests/golden/losses.py

Writes tests/golden/losses.safetensors (read by tests/losses.rs). Not run by CI.

For every case and each dtype (float32, float64) the file holds the input `x`, the target `y`
(a float tensor, or integer class labels `labels`), class/element weights `w` and `pw` where the
case uses them, the loss `out`, the seed `g` of the backward pass (a fixed random tensor of the
output's shape, not ones) and the gradients `dx` (and `dy` for float targets). Inputs are drawn
once in float64 and cast, so both dtypes see the same numbers. The options of each case are
spelled out in its name and repeated in tests/losses.rs.

Names: "{case}.{dtype}.{tensor}", dtype "f32" or "f64".
"""

import pathlib

import torch
import torch.nn as nn
from safetensors.torch import save_file

torch.manual_seed(20261127)
OUT = {}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def randn(*dims):
    return torch.randn(*dims, dtype=torch.float64)


def record(case, x, y, loss, labels=None, w=None, pw=None, target_grad=True, grads=True):
    """x, y: float64 tensors (y None for class labels); loss(x, y_or_labels, w, pw) -> output."""
    for tag, dtype in DTYPES.items():
        xt = x.to(dtype).clone().requires_grad_(True)
        yt = None if y is None else y.to(dtype).clone().requires_grad_(target_grad)
        wt = None if w is None else w.to(dtype)
        pwt = None if pw is None else pw.to(dtype)
        out = loss(xt, labels if y is None else yt, wt, pwt)
        gen = torch.Generator().manual_seed(len(OUT))
        g = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
        p = f"{case}.{tag}"
        OUT[f"{p}.x"] = xt.detach().clone()
        if yt is not None:
            OUT[f"{p}.y"] = yt.detach().clone()
        if labels is not None:
            OUT[f"{p}.labels"] = labels.clone()
        if wt is not None:
            OUT[f"{p}.w"] = wt.clone()
        if pwt is not None:
            OUT[f"{p}.pw"] = pwt.clone()
        OUT[f"{p}.out"] = out.detach().clone()
        OUT[f"{p}.g"] = g
        if grads:
            out.backward(g)
            OUT[f"{p}.dx"] = xt.grad.clone()
            if yt is not None and target_grad:
                OUT[f"{p}.dy"] = yt.grad.clone()


# ---- cross-entropy and NLL (integer labels, classes on axis 1) ---------------------------------
x45 = randn(4, 5)
labels4 = torch.tensor([1, 0, 4, 2])
labels4_ignored = torch.tensor([1, -100, 4, 2])
labels4_custom = torch.tensor([1, 3, 3, 2])  # ignore_index=3 drops two
w5 = torch.rand(5, dtype=torch.float64) + 0.5
x234 = randn(2, 3, 4)
labels24 = torch.tensor([[0, 2, 1, 1], [2, 2, 0, -100]])
w3 = torch.rand(3, dtype=torch.float64) + 0.5


def ce(**kw):
    return lambda x, t, w, pw: nn.CrossEntropyLoss(weight=w, **kw)(x, t)


def nll(**kw):
    return lambda x, t, w, pw: nn.NLLLoss(weight=w, **kw)(x, t)


record("ce_mean", x45, None, ce(), labels=labels4)
record("ce_sum", x45, None, ce(reduction="sum"), labels=labels4)
record("ce_none", x45, None, ce(reduction="none"), labels=labels4)
record("ce_weight", x45, None, ce(), labels=labels4, w=w5)
record("ce_ignore_default", x45, None, ce(), labels=labels4_ignored)
record("ce_ignore_3", x45, None, ce(ignore_index=3), labels=labels4_custom)
record("ce_smooth", x45, None, ce(label_smoothing=0.1), labels=labels4)
record(
    "ce_smooth_weight_ignore",
    x45,
    None,
    ce(label_smoothing=0.2),
    labels=labels4_ignored,
    w=w5,
)
record("ce_smooth_sum", x45, None, ce(label_smoothing=0.3, reduction="sum"), labels=labels4)
record("ce_smooth_none", x45, None, ce(label_smoothing=0.3, reduction="none"), labels=labels4_ignored)
record("ce_nd_weight", x234, None, ce(), labels=labels24, w=w3)
record("ce_nd_none_smooth", x234, None, ce(reduction="none", label_smoothing=0.1), labels=labels24)

logp45 = torch.log_softmax(randn(4, 5), dim=1)
record("nll_mean", logp45, None, nll(), labels=labels4)
record("nll_weight_ignore", logp45, None, nll(), labels=labels4_ignored, w=w5)
record("nll_sum_ignore_3", logp45, None, nll(reduction="sum", ignore_index=3), labels=labels4_custom)
record("nll_nd_none", torch.log_softmax(x234, dim=1), None, nll(reduction="none"), labels=labels24)

# ---- binary cross-entropy -------------------------------------------------------------------
p = torch.rand(3, 4, dtype=torch.float64) * 0.9 + 0.05
y01 = (torch.rand(3, 4, dtype=torch.float64) > 0.5).to(torch.float64)
ysoft = torch.rand(3, 4, dtype=torch.float64)
w34 = torch.rand(3, 4, dtype=torch.float64) + 0.5
w4 = torch.rand(4, dtype=torch.float64) + 0.5


def bce(**kw):
    return lambda x, y, w, pw: nn.BCELoss(weight=w, **kw)(x, y)


record("bce_mean", p, y01, bce())
record("bce_soft_sum", p, ysoft, bce(reduction="sum"))
record("bce_weight_none", p, ysoft, bce(reduction="none"), w=w34)
record("bce_weight_row", p, y01, bce(), w=w4)
# Probabilities exactly 0 and 1: the logs clamp at -100 (values only; PyTorch's gradient there
# divides by max(p(1-p), 1e-12), see the doc comment of BCELoss).
edges = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 1e-50], dtype=torch.float64)
record("bce_edges_none", edges, torch.tensor([0.0, 1.0, 1.0, 0.3, 0.5, 1.0], dtype=torch.float64),
       bce(reduction="none"), grads=False)

# ---- binary cross-entropy on logits ----------------------------------------------------------
logits = randn(3, 4) * 3
pw4 = torch.rand(4, dtype=torch.float64) * 3 + 0.2


def bcel(**kw):
    return lambda x, y, w, pw: nn.BCEWithLogitsLoss(weight=w, pos_weight=pw, **kw)(x, y)


record("bcel_mean", logits, y01, bcel())
record("bcel_soft_sum", logits, ysoft, bcel(reduction="sum"))
record("bcel_pos_weight", logits, ysoft, bcel(), pw=pw4)
record("bcel_weight_pos_weight_none", logits, y01, bcel(reduction="none"), w=w34, pw=pw4)
big = torch.tensor([-200.0, -50.0, -20.0, 0.0, 20.0, 50.0, 200.0], dtype=torch.float64)
record("bcel_large_none", big, torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.0], dtype=torch.float64),
       bcel(reduction="none"))

# ---- regression losses -----------------------------------------------------------------------
a = randn(3, 5) * 2
b = randn(3, 5) * 2


def mk(cls, **kw):
    return lambda x, y, w, pw: cls(**kw)(x, y)


record("mse_mean", a, b, mk(nn.MSELoss))
record("mse_sum", a, b, mk(nn.MSELoss, reduction="sum"))
record("mse_none", a, b, mk(nn.MSELoss, reduction="none"))
record("l1_mean", a, b, mk(nn.L1Loss))
record("l1_sum", a, b, mk(nn.L1Loss, reduction="sum"))
record("l1_none", a, b, mk(nn.L1Loss, reduction="none"))
record("smooth_l1_mean", a, b, mk(nn.SmoothL1Loss))
record("smooth_l1_beta_half_sum", a, b, mk(nn.SmoothL1Loss, beta=0.5, reduction="sum"))
record("smooth_l1_beta_3_none", a, b, mk(nn.SmoothL1Loss, beta=3.0, reduction="none"))
record("smooth_l1_beta_0", a, b, mk(nn.SmoothL1Loss, beta=0.0))
record("huber_mean", a, b, mk(nn.HuberLoss))
record("huber_delta_2_5_sum", a, b, mk(nn.HuberLoss, delta=2.5, reduction="sum"))
record("huber_delta_0_3_none", a, b, mk(nn.HuberLoss, delta=0.3, reduction="none"))

# ---- KL divergence ---------------------------------------------------------------------------
logq = torch.log_softmax(randn(4, 6), dim=1)
ptarget = torch.softmax(randn(4, 6) * 2, dim=1)
ptarget[0, 2] = 0.0  # zeros in the target: y log y = 0 there
ptarget[3, 0] = 0.0
logp = torch.log_softmax(randn(4, 6), dim=1)
record("kl_mean", logq, ptarget, mk(nn.KLDivLoss, reduction="mean"))
record("kl_batchmean", logq, ptarget, mk(nn.KLDivLoss, reduction="batchmean"))
record("kl_sum", logq, ptarget, mk(nn.KLDivLoss, reduction="sum"))
record("kl_none", logq, ptarget, mk(nn.KLDivLoss, reduction="none"))
record("kl_log_target_batchmean", logq, logp, mk(nn.KLDivLoss, reduction="batchmean", log_target=True))
record("kl_log_target_none", logq, logp, mk(nn.KLDivLoss, reduction="none", log_target=True))

path = pathlib.Path(__file__).with_name("losses.safetensors")
save_file({k: v.contiguous() for k, v in OUT.items()}, str(path))
print(f"wrote {len(OUT)} tensors to {path} ({path.stat().st_size} bytes)")
