"""Golden values for tests/optim_toolkit.rs: optimizer trajectories, lr-scheduler sequences and
gradient clipping, from PyTorch (run by hand: python3 tests/golden/optim_toolkit.py).

Optimizers: two parameters, `weight` [3, 4] and `bias` [4], start from fixed values and are fed
fixed gradients, one set per step for STEPS steps (scaled differently per step so AMSGrad's running
maximum matters). Each case stores the parameters after every step, in f32 and f64 (the same
numbers, rounded to f32). Schedulers: an SGD with two groups (lr 0.1 and 0.05), the lr of each
group after construction and after each of the steps. Clipping: three gradients, the total norm
and the clipped gradients.
"""
import math
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
STEPS = 10
out = {}

init_w = torch.randn(3, 4, dtype=torch.float64)
init_b = torch.randn(4, dtype=torch.float64)
scales = torch.tensor([1.0, 0.3, 2.0, 0.1, 1.5, 0.05, 0.8, 3.0, 0.2, 1.0], dtype=torch.float64)
grads_w = torch.randn(STEPS, 3, 4, dtype=torch.float64) * scales[:, None, None]
grads_b = torch.randn(STEPS, 4, dtype=torch.float64) * scales[:, None]
out["init.weight"] = init_w
out["init.bias"] = init_b
out["grads.weight"] = grads_w
out["grads.bias"] = grads_b

# name -> (optimizer class, keyword arguments, groups?)
# groups: weight in group 0 with the defaults, bias in group 1 with lr × 0.5 and no weight decay.
OPT_CASES = {
    "sgd_maximize": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True), False),
    "rmsprop_default": (torch.optim.RMSprop, dict(lr=0.01), False),
    "rmsprop_momentum": (torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.9), False),
    "rmsprop_centered": (torch.optim.RMSprop, dict(lr=0.01, centered=True), False),
    "rmsprop_centered_momentum_wd": (torch.optim.RMSprop, dict(lr=0.02, alpha=0.8, eps=1e-6, centered=True, momentum=0.5, weight_decay=0.1), False),
    "rmsprop_maximize": (torch.optim.RMSprop, dict(lr=0.01, momentum=0.3, maximize=True), False),
    "rmsprop_groups": (torch.optim.RMSprop, dict(lr=0.01, weight_decay=0.2, momentum=0.5), True),
    "adagrad_default": (torch.optim.Adagrad, dict(lr=0.1), False),
    "adagrad_options": (torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.1, weight_decay=0.05, initial_accumulator_value=0.3, eps=1e-8), False),
    "adagrad_maximize": (torch.optim.Adagrad, dict(lr=0.1, maximize=True, weight_decay=0.1), False),
    "adagrad_groups": (torch.optim.Adagrad, dict(lr=0.1, weight_decay=0.1, lr_decay=0.05), True),
    "adam_amsgrad": (torch.optim.Adam, dict(lr=0.01, amsgrad=True), False),
    "adam_amsgrad_wd": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.9), amsgrad=True, weight_decay=0.1), False),
    "adamw_amsgrad": (torch.optim.AdamW, dict(lr=0.01, amsgrad=True, weight_decay=0.1), False),
    "adam_maximize": (torch.optim.Adam, dict(lr=0.01, weight_decay=0.1, maximize=True), False),
    "adamw_maximize_amsgrad": (torch.optim.AdamW, dict(lr=0.01, maximize=True, amsgrad=True), False),
    "adam_lerp_high_weight": (torch.optim.Adam, dict(lr=0.01, betas=(0.3, 0.999)), False),
    "adamw_groups": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1, amsgrad=True), True),
}

for name, (cls, kw, grouped) in OPT_CASES.items():
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        w = init_w.to(dtype).clone().requires_grad_(True)
        b = init_b.to(dtype).clone().requires_grad_(True)
        if grouped:
            params = [{"params": [w]}, {"params": [b], "lr": kw["lr"] * 0.5, "weight_decay": 0.0}]
        else:
            params = [w, b]
        opt = cls(params, foreach=False, **kw)
        traj_w, traj_b = [], []
        for t in range(STEPS):
            w.grad = grads_w[t].to(dtype).clone()
            b.grad = grads_b[t].to(dtype).clone()
            opt.step()
            traj_w.append(w.detach().clone())
            traj_b.append(b.detach().clone())
        out[f"opt.{name}.{tag}.weight"] = torch.stack(traj_w)
        out[f"opt.{name}.{tag}.bias"] = torch.stack(traj_b)

# Schedulers.
SCHED_STEPS = 40
S = torch.optim.lr_scheduler


def sgd(momentum=0.0):
    p0 = torch.zeros(1, requires_grad=True)
    p1 = torch.zeros(1, requires_grad=True)
    return torch.optim.SGD([{"params": [p0], "lr": 0.1}, {"params": [p1], "lr": 0.05}], momentum=momentum)


SCHED_CASES = {
    "step": lambda o: S.StepLR(o, step_size=7, gamma=0.5),
    "multistep": lambda o: S.MultiStepLR(o, milestones=[5, 12, 12, 25], gamma=0.3),
    "exponential": lambda o: S.ExponentialLR(o, gamma=0.9),
    "cosine": lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "cosine_long": lambda o: S.CosineAnnealingLR(o, T_max=35),
    "linear": lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=8),
    "linear_down": lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=20),
    "onecycle_cos": lambda o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=SCHED_STEPS, cycle_momentum=False),
    "onecycle_linear": lambda o: S.OneCycleLR(o, max_lr=0.8, total_steps=SCHED_STEPS + 1, pct_start=0.25, anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0, cycle_momentum=False),
    "onecycle_three_phase": lambda o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=SCHED_STEPS, three_phase=True, cycle_momentum=False),
    "sequential": lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, total_iters=5), S.CosineAnnealingLR(o, T_max=20, eta_min=0.001)], milestones=[5]),
    "sequential3": lambda o: S.SequentialLR(o, [S.ExponentialLR(o, gamma=0.9), S.StepLR(o, step_size=3, gamma=0.5), S.CosineAnnealingLR(o, T_max=10)], milestones=[6, 15]),
}

for name, make in SCHED_CASES.items():
    o = sgd()
    s = make(o)
    lrs = [[g["lr"] for g in o.param_groups]]
    for _ in range(SCHED_STEPS):
        o.step()
        s.step()
        lrs.append([g["lr"] for g in o.param_groups])
    out[f"sched.{name}"] = torch.tensor(lrs, dtype=torch.float64)

# OneCycleLR cycling the momentum of SGD and β₁ of Adam: the lrs and the momentums.
o = sgd(momentum=0.9)
s = S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=SCHED_STEPS, base_momentum=0.8, max_momentum=0.9)
lrs, moms = [[g["lr"] for g in o.param_groups]], [[g["momentum"] for g in o.param_groups]]
for _ in range(SCHED_STEPS):
    o.step()
    s.step()
    lrs.append([g["lr"] for g in o.param_groups])
    moms.append([g["momentum"] for g in o.param_groups])
out["sched.onecycle_momentum_sgd"] = torch.tensor(lrs, dtype=torch.float64)
out["sched.onecycle_momentum_sgd.momentum"] = torch.tensor(moms, dtype=torch.float64)
p0 = torch.zeros(1, requires_grad=True)
p1 = torch.zeros(1, requires_grad=True)
o = torch.optim.Adam([{"params": [p0], "lr": 0.1}, {"params": [p1], "lr": 0.05}])
s = S.OneCycleLR(o, max_lr=0.3, total_steps=SCHED_STEPS + 1, anneal_strategy="linear", three_phase=True)
lrs, moms = [[g["lr"] for g in o.param_groups]], [[g["betas"][0] for g in o.param_groups]]
for _ in range(SCHED_STEPS):
    o.step()
    s.step()
    lrs.append([g["lr"] for g in o.param_groups])
    moms.append([g["betas"][0] for g in o.param_groups])
out["sched.onecycle_momentum_adam"] = torch.tensor(lrs, dtype=torch.float64)
out["sched.onecycle_momentum_adam.momentum"] = torch.tensor(moms, dtype=torch.float64)

# Trajectories under a 1cycle schedule that moves the lr and the momentum (β₁) every step.
SCHED_OPT_CASES = {
    "adam_onecycle": (torch.optim.Adam, dict(lr=0.01, betas=(0.9, 0.99)), dict(max_lr=0.05, total_steps=STEPS)),
    "sgd_onecycle": (torch.optim.SGD, dict(lr=0.01, momentum=0.9, dampening=0.1), dict(max_lr=0.2, total_steps=STEPS + 1, three_phase=True, anneal_strategy="linear")),
}
for name, (cls, kw, sched_kw) in SCHED_OPT_CASES.items():
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        w = init_w.to(dtype).clone().requires_grad_(True)
        b = init_b.to(dtype).clone().requires_grad_(True)
        opt = cls([w, b], foreach=False, **kw)
        sched = S.OneCycleLR(opt, **sched_kw)
        traj_w, traj_b = [], []
        for t in range(STEPS):
            w.grad = grads_w[t].to(dtype).clone()
            b.grad = grads_b[t].to(dtype).clone()
            opt.step()
            sched.step()
            traj_w.append(w.detach().clone())
            traj_b.append(b.detach().clone())
        out[f"opt.{name}.{tag}.weight"] = torch.stack(traj_w)
        out[f"opt.{name}.{tag}.bias"] = torch.stack(traj_b)

# ReduceLROnPlateau: a fixed metric sequence with improvements, plateaus and a NaN.
metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.85, 0.8499, 0.8499, 0.8499, 0.7, 0.7, 0.7, 0.7, 0.7, 0.69, 0.69,
           0.69, 0.69, 0.69, 0.69, 0.5, float("nan"), 0.5, 0.5, 0.5, 0.49995, 0.4, 0.4, 0.4, 0.4,
           0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]
out["plateau.metrics"] = torch.tensor(metrics, dtype=torch.float64)
PLATEAU_CASES = {
    "plateau_min_rel": dict(mode="min", factor=0.5, patience=2),
    "plateau_min_abs_cooldown": dict(mode="min", factor=0.5, patience=1, threshold=0.01, threshold_mode="abs", cooldown=3, min_lr=[0.01, 0.02]),
    "plateau_max_rel": dict(mode="max", factor=0.3, patience=3, threshold=0.05),
    "plateau_max_abs_min_lr": dict(mode="max", factor=0.1, patience=0, threshold_mode="abs", min_lr=0.004, eps=1e-3),
}
for name, kw in PLATEAU_CASES.items():
    o = sgd()
    s = S.ReduceLROnPlateau(o, **kw)
    lrs = [[g["lr"] for g in o.param_groups]]
    for m in metrics:
        o.step()
        s.step(m)
        lrs.append([g["lr"] for g in o.param_groups])
    out[f"sched.{name}"] = torch.tensor(lrs, dtype=torch.float64)

# Gradient clipping.
clip_grads = [torch.randn(3, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64), torch.randn(2, 2, 2, dtype=torch.float64) * 3]
for i, g in enumerate(clip_grads):
    out[f"clip.grad{i}"] = g
for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
    for norm_type, ntag in [(2.0, "2"), (1.0, "1"), (math.inf, "inf"), (3.0, "3")]:
        for max_norm, mtag in [(1.0, "clip"), (100.0, "noclip")]:
            ps = [torch.zeros_like(g, dtype=dtype, requires_grad=True) for g in clip_grads]
            for p, g in zip(ps, clip_grads):
                p.grad = g.to(dtype).clone()
            total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type=norm_type, foreach=False)
            key = f"clip.{tag}.norm{ntag}.{mtag}"
            out[f"{key}.total"] = total.reshape(1)
            for i, p in enumerate(ps):
                out[f"{key}.grad{i}"] = p.grad.clone()
    ps = [torch.zeros_like(g, dtype=dtype, requires_grad=True) for g in clip_grads]
    for p, g in zip(ps, clip_grads):
        p.grad = g.to(dtype).clone()
    torch.nn.utils.clip_grad_value_(ps, 0.5, foreach=False)
    for i, p in enumerate(ps):
        out[f"clip.{tag}.value.grad{i}"] = p.grad.clone()

out = {k: v.contiguous() for k, v in out.items()}
path = os.path.join(os.path.dirname(__file__), "optim_toolkit.safetensors")
save_file(out, path)
print(f"wrote {len(out)} tensors to {path} ({os.path.getsize(path)} bytes)")
