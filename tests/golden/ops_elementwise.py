"""Golden values for the element-wise ops (tests/ops_elementwise.rs), written by PyTorch.

Not run by CI (it needs torch). Regenerate with:

    python3 tests/golden/ops_elementwise.py   # writes tests/golden/ops_elementwise.safetensors

For every case and for float32 and float64 it stores, under `{case}.{dtype}.`:
  in0, in1, …  the inputs (drawn once in float64, then rounded to the dtype);
  out          the op's output;
  g            the gradient the backward pass is seeded with (a fixed random tensor, not ones);
  grad0, …     the gradient of every differentiable input (absent for masks and conditions, and
               for comparisons, which have no gradient).
Masks and conditions are stored as 0.0/1.0 floats and given to PyTorch as `mask != 0`.
Several inputs hold the kinks exactly (0 for abs/leaky_relu/elu, the bounds of clamp/hardtanh, the
softplus threshold, ties for maximum/minimum, x = 0 and e = 0 for pow) so that the file pins
PyTorch's conventions there.
"""

import os
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
NAN, INF = float("nan"), float("inf")


def gen(name, k):
    """A generator seeded by the case name and input number, so cases do not shift each other."""
    return torch.Generator().manual_seed(zlib.crc32(f"{name}/{k}".encode()))


def randn(name, k, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen(name, k), dtype=torch.float64) * scale


def uniform(name, k, lo, hi, *shape):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen(name, k), dtype=torch.float64)


def with_values(t, values):
    """t with its first elements replaced by `values` (kinks placed exactly)."""
    t = t.clone().flatten()
    t[: len(values)] = torch.tensor(values, dtype=torch.float64)
    return t


def grid(name, k, *shape, step=0.5, lo=-2.0, hi=2.0):
    """Multiples of `step` in [lo, hi]: many ties."""
    n = int(round((hi - lo) / step)) + 1
    idx = torch.randint(0, n, shape, generator=gen(name, k))
    return lo + step * idx.to(torch.float64)


CASES = []


def case(name, fn, inputs, diff):
    """`inputs` are float64 tensors; `diff[k]` says whether input k gets a gradient."""
    CASES.append((name, fn, inputs, diff))


def unary(name, fn, x):
    case(name, fn, [x], [True])


S = (3, 4)

# --- math functions -------------------------------------------------------------------------
unary("sqrt", torch.sqrt, with_values(uniform("sqrt", 0, 0.1, 4.0, *S), [0.0]).reshape(S))
unary("rsqrt", torch.rsqrt, uniform("rsqrt", 0, 0.1, 4.0, *S))
unary("square", torch.square, randn("square", 0, *S))
unary("reciprocal", torch.reciprocal, randn("reciprocal", 0, *S).sign() * uniform("reciprocal", 1, 0.2, 3.0, *S))
unary("abs", torch.abs, with_values(randn("abs", 0, *S), [0.0, -0.0]).reshape(S))
unary("sin", torch.sin, randn("sin", 0, *S, scale=2.0))
unary("cos", torch.cos, randn("cos", 0, *S, scale=2.0))
unary("log1p", torch.log1p, uniform("log1p", 0, -0.9, 3.0, *S))
unary("expm1", torch.expm1, with_values(randn("expm1", 0, *S), [1e-9, -1e-9]).reshape(S))
unary("erf", torch.erf, randn("erf", 0, *S, scale=1.5))

# pow with a constant exponent: PyTorch's special cases (0, 1, ±0.5, −1, 2, 3, −2) and the general
# path; x = 0 included where the value is finite (e ≥ 0), negative x where e is an integer.
for label, e in [("2", 2.0), ("3", 3.0), ("0", 0.0), ("1", 1.0), ("m1", -1.0), ("m2", -2.0), ("4", 4.0)]:
    x = with_values(randn(f"pow_scalar_{label}", 0, *S), [0.0] if e >= 0 else []).reshape(S)
    if e < 0:
        x = x.sign() * (x.abs() + 0.3)
    unary(f"pow_scalar_{label}", (lambda e: lambda t: t**e)(e), x)
for label, e in [("0p5", 0.5), ("m0p5", -0.5), ("1p5", 1.5), ("2p5", 2.5), ("m1p5", -1.5), ("0p3", 0.3)]:
    x = uniform(f"pow_scalar_{label}", 0, 0.2, 3.0, *S)
    if e > 0:
        x = with_values(x, [0.0]).reshape(S)
    unary(f"pow_scalar_{label}", (lambda e: lambda t: t**e)(e), x)

# clamp: values on the bounds exactly, and NaN.
clamp_x = lambda name: with_values(randn(name, 0, *S, scale=1.5), [-0.5, 1.0, 0.0, 0.5, NAN]).reshape(S)
unary("clamp_both", lambda t: torch.clamp(t, -0.5, 1.0), clamp_x("clamp_both"))
unary("clamp_min", lambda t: torch.clamp(t, min=0.0), clamp_x("clamp_min"))
unary("clamp_max", lambda t: torch.clamp(t, max=0.5), clamp_x("clamp_max"))
unary("clamp_inverted", lambda t: torch.clamp(t, 1.0, -1.0), clamp_x("clamp_inverted"))

# --- activations ----------------------------------------------------------------------------
act_x = lambda name, scale=2.0: with_values(randn(name, 0, *S, scale=scale), [0.0, -0.0]).reshape(S)
unary("gelu", F.gelu, act_x("gelu"))
unary("gelu_tanh", lambda t: F.gelu(t, approximate="tanh"), act_x("gelu_tanh"))
unary("silu", F.silu, act_x("silu"))
unary("softplus", F.softplus, with_values(randn("softplus", 0, *S, scale=12.0), [20.0, 19.5, 20.5, 0.0]).reshape(S))
unary("softplus_beta2", lambda t: F.softplus(t, beta=2.0, threshold=5.0),
      with_values(randn("softplus_beta2", 0, *S, scale=3.0), [2.5, 2.25, 2.75]).reshape(S))
unary("softplus_negbeta", lambda t: F.softplus(t, beta=-1.5, threshold=20.0), act_x("softplus_negbeta", 3.0))
unary("leaky_relu", lambda t: F.leaky_relu(t, 0.01), act_x("leaky_relu"))
unary("leaky_relu_0p2", lambda t: F.leaky_relu(t, 0.2), act_x("leaky_relu_0p2"))
unary("leaky_relu_neg", lambda t: F.leaky_relu(t, -0.5), act_x("leaky_relu_neg"))
unary("elu", F.elu, act_x("elu"))
unary("elu_0p5", lambda t: F.elu(t, 0.5), act_x("elu_0p5"))
# (No NaN here: PyTorch's hardtanh gradient at NaN depends on the tensor's length.)
unary("hardtanh", F.hardtanh, with_values(randn("hardtanh", 0, *S, scale=1.5), [-1.0, 1.0, 0.0]).reshape(S))
unary("hardtanh_relu6", lambda t: F.hardtanh(t, 0.0, 6.0),
      with_values(randn("hardtanh_relu6", 0, *S, scale=4.0), [0.0, 6.0, 3.0]).reshape(S))

# --- binary with broadcasting ---------------------------------------------------------------
case("pow", torch.pow, [uniform("pow", 0, 0.2, 3.0, *S), randn("pow", 1, 4)], [True, True])
case("pow_bcast_base", torch.pow, [uniform("pow_bcast_base", 0, 0.2, 3.0, 3, 1), randn("pow_bcast_base", 1, 1, 4)], [True, True])
# x = 0 with e = 0, e > 0, e < 0; e = 0 with x ≠ 0; a negative base.
case("pow_special", torch.pow,
     [torch.tensor([0.0, 0.0, 0.0, 2.0, -2.0, 0.0, 3.0, -1.5]),
      torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0, 2.5, 0.5, 3.0])], [True, True])
tie_a = lambda name: grid(name, 0, *S)
tie_b = lambda name: grid(name, 1, 4)
case("maximum", torch.maximum, [tie_a("maximum"), tie_b("maximum")], [True, True])
case("minimum", torch.minimum, [tie_a("minimum"), tie_b("minimum")], [True, True])
case("maximum_nan", torch.maximum, [torch.tensor([1.0, NAN, 2.0, NAN, 3.0]), torch.tensor([1.0, 1.0, NAN, NAN, 2.0])], [True, True])
case("minimum_nan", torch.minimum, [torch.tensor([1.0, NAN, 2.0, NAN, 3.0]), torch.tensor([1.0, 1.0, NAN, NAN, 2.0])], [True, True])

# --- comparisons (no gradient) ----------------------------------------------------------------
cmp_a = lambda name: with_values(grid(name, 0, *S), [NAN]).reshape(S)
for op in ["gt", "ge", "lt", "le", "eq", "ne"]:
    fn = getattr(torch, op)
    case(op, (lambda fn: lambda a, b: fn(a, b).to(a.dtype))(fn), [cmp_a(op), grid(op, 1, 4)], [False, False])
    case(f"{op}_scalar", (lambda fn: lambda a: fn(a, 0.5).to(a.dtype))(fn), [cmp_a(f"{op}_scalar")], [False])

# --- selection --------------------------------------------------------------------------------
mask = lambda name, *shape: (torch.rand(*shape, generator=gen(name, 9)) < 0.4).to(torch.float64)
case("masked_fill", lambda x, m: x.masked_fill(m != 0, -INF), [randn("masked_fill", 0, *S), mask("masked_fill", 4)], [True, False])
case("masked_fill_bcast", lambda x, m: x.masked_fill(m != 0, 0.25), [randn("masked_fill_bcast", 0, 4), mask("masked_fill_bcast", *S)], [True, False])
case("where", lambda c, a, b: torch.where(c != 0, a, b),
     [mask("where", 3, 1), randn("where", 1, *S), randn("where", 2, 4)], [False, True, True])
case("where_scalar", lambda c, a, b: torch.where(c != 0, a, b),
     [mask("where_scalar", *S), randn("where_scalar", 1, 4), torch.tensor(-1.5)], [False, True, True])

# --- operators with a number on the left ------------------------------------------------------
unary("rdiv", lambda t: 2.0 / t, uniform("rdiv", 0, 0.3, 3.0, *S))
unary("rsub", lambda t: 1.5 - t, randn("rsub", 0, *S))


def main():
    torch.set_num_threads(1)
    out = {}
    for name, fn, inputs, diff in CASES:
        for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
            xs = [x.to(dtype).clone().requires_grad_(d) for x, d in zip(inputs, diff)]
            y = fn(*xs)
            for k, x in enumerate(xs):
                out[f"{name}.{tag}.in{k}"] = x.detach().clone()
            out[f"{name}.{tag}.out"] = y.detach().clone()
            if y.requires_grad:
                g = torch.randn(y.shape, generator=gen(name, 99), dtype=torch.float64).to(dtype)
                y.backward(g)
                out[f"{name}.{tag}.g"] = g
                for k, x in enumerate(xs):
                    if diff[k]:
                        out[f"{name}.{tag}.grad{k}"] = x.grad.detach().clone()
    path = os.path.join(HERE, "ops_elementwise.safetensors")
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    print(f"torch {torch.__version__}: {len(CASES)} cases, {len(out)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
