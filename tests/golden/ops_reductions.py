"""Golden values for the reductions along an axis (tests/ops_reductions.rs).

    python3 tests/golden/ops_reductions.py   # writes tests/golden/ops_reductions.safetensors

For every case and dtype (float32, float64), the file holds `{case}.{dtype}.x` (input),
`.y` (output), `.g` (the seed gradient: a fixed random tensor, not ones) and `.dx` (the gradient
of the input), and `.idx` (int64) for the ops that return indices. The inputs are drawn in float64
and rounded to float32 for the float32 cases, so both dtypes see the same values where they fit.
The test matches each case name to the same op in Rust; a new case here needs a line there.
"""

import math

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
inf = math.inf
vector_norm = torch.linalg.vector_norm


def randn(*shape):
    return torch.randn(shape, dtype=torch.float64)


def ties(*shape):
    """Small integers: many equal elements per slice."""
    return torch.randint(-2, 3, shape).to(torch.float64)


def signed_uniform(*shape):
    """|x| in [0.5, 1.5) with random signs: products stay near 1."""
    magnitude = torch.rand(*shape, dtype=torch.float64) + 0.5
    sign = torch.randint(0, 2, shape).to(torch.float64) * 2 - 1
    return magnitude * sign


def all_dims(x):
    return tuple(range(x.dim()))


# name -> (input, function returning (output, indices or None)); the function sees the input
# with requires_grad set.
CASES = {
    "max_ax1": (randn(3, 4), lambda x: tuple(torch.max(x, 1))),
    "max_ax0_keep": (randn(3, 4), lambda x: tuple(torch.max(x, 0, keepdim=True))),
    "max_ties_neg1": (ties(2, 3, 4), lambda x: tuple(torch.max(x, -1))),
    "max_empty_out": (randn(0, 3), lambda x: tuple(torch.max(x, 1))),
    "max_scalar": (randn(), lambda x: tuple(torch.max(x, 0))),
    "min_ties_ax1": (ties(3, 5), lambda x: tuple(torch.min(x, 1))),
    "min_ax0_keep": (randn(4, 3), lambda x: tuple(torch.min(x, 0, keepdim=True))),
    "amax_ties_ax1": (ties(3, 5), lambda x: (torch.amax(x, 1), None)),
    "amax_ties_all": (ties(2, 3), lambda x: (torch.amax(x, dim=()), None)),
    "amax_ties_all_keep": (ties(2, 3), lambda x: (torch.amax(x, dim=(), keepdim=True), None)),
    "amax_ax0": (randn(4, 3), lambda x: (torch.amax(x, 0), None)),
    "amin_ties_neg2_keep": (ties(2, 3, 4), lambda x: (torch.amin(x, -2, keepdim=True), None)),
    "amin_ties_all": (ties(3, 3), lambda x: (torch.amin(x, dim=()), None)),
    "argmax_ties_ax1": (ties(3, 5), lambda x: (None, torch.argmax(x, 1))),
    "argmax_all": (randn(3, 4), lambda x: (None, torch.argmax(x))),
    "argmax_all_keep": (ties(2, 3), lambda x: (None, torch.argmax(x, dim=None, keepdim=True))),
    "argmin_ties_ax0_keep": (ties(4, 3), lambda x: (None, torch.argmin(x, 0, keepdim=True))),
    "argmin_all": (ties(3, 4), lambda x: (None, torch.argmin(x))),
    "var_ax1_c1": (randn(3, 5), lambda x: (torch.var(x, 1, correction=1), None)),
    "var_ax0_c0_keep": (randn(4, 3), lambda x: (torch.var(x, 0, correction=0, keepdim=True), None)),
    "var_all_c1": (randn(3, 4), lambda x: (torch.var(x, correction=1), None)),
    "var_all_c2_keep": (randn(2, 3), lambda x: (torch.var(x, dim=None, correction=2, keepdim=True), None)),
    "var_neg1_c05": (randn(2, 3, 4), lambda x: (torch.var(x, -1, correction=0.5), None)),
    "var_neg_correction": (randn(3, 4), lambda x: (torch.var(x, 1, correction=-1), None)),
    "var_single_c0": (randn(3, 1), lambda x: (torch.var(x, 1, correction=0), None)),
    "var_single_c1": (randn(3, 1), lambda x: (torch.var(x, 1, correction=1), None)),
    "var_dof0_ax1": (randn(2, 2), lambda x: (torch.var(x, 1, correction=2), None)),
    "var_dofneg_ax1": (randn(2, 2), lambda x: (torch.var(x, 1, correction=3), None)),
    "var_dof0_all": (randn(3), lambda x: (torch.var(x, correction=3), None)),
    "var_dof0_all_const": (torch.ones(3, dtype=torch.float64), lambda x: (torch.var(x, correction=3), None)),
    "var_empty_ax0": (randn(0, 3), lambda x: (torch.var(x, 0), None)),
    "std_ax1_c1": (randn(3, 5), lambda x: (torch.std(x, 1), None)),
    "std_all_c0": (randn(3, 4), lambda x: (torch.std(x, correction=0), None)),
    "std_ax0_keep": (randn(4, 3), lambda x: (torch.std(x, 0, keepdim=True), None)),
    "std_const_row": (torch.tensor([[2.0, 2.0, 2.0], [1.0, -1.0, 0.5]], dtype=torch.float64),
                      lambda x: (torch.std(x, 1), None)),
    "logsumexp_ax1": (randn(3, 4), lambda x: (torch.logsumexp(x, 1), None)),
    "logsumexp_ax0_keep": (randn(4, 3), lambda x: (torch.logsumexp(x, 0, keepdim=True), None)),
    "logsumexp_all": (randn(2, 3), lambda x: (torch.logsumexp(x, all_dims(x)), None)),
    "logsumexp_all_keep": (randn(2, 3), lambda x: (torch.logsumexp(x, all_dims(x), keepdim=True), None)),
    "logsumexp_large": (randn(2, 5) * 3 + 1000, lambda x: (torch.logsumexp(x, 1), None)),
    "logsumexp_infinities": (torch.tensor([[-inf, -inf, -inf], [-inf, 0.5, 1.0], [inf, 1.0, 2.0],
                                           [inf, -inf, 0.0]], dtype=torch.float64),
                             lambda x: (torch.logsumexp(x, 1), None)),
    "logsumexp_empty_ax0": (randn(0, 3), lambda x: (torch.logsumexp(x, 0), None)),
    "norm_l1_ax1": (randn(3, 4), lambda x: (vector_norm(x, 1, dim=1), None)),
    "norm_l2_ax1": (randn(3, 4), lambda x: (vector_norm(x, 2, dim=1), None)),
    "norm_inf_ax1": (randn(3, 4), lambda x: (vector_norm(x, inf, dim=1), None)),
    "norm_l1_all": (randn(2, 3), lambda x: (vector_norm(x, 1), None)),
    "norm_l2_all_keep": (randn(2, 3), lambda x: (vector_norm(x, 2, dim=None, keepdim=True), None)),
    "norm_inf_all": (randn(2, 3), lambda x: (vector_norm(x, inf), None)),
    "norm_l2_ax0_keep": (randn(4, 3), lambda x: (vector_norm(x, 2, dim=0, keepdim=True), None)),
    "norm_l1_zeros": (torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, -1.0]], dtype=torch.float64),
                      lambda x: (vector_norm(x, 1, dim=1), None)),
    "norm_l2_zeros": (torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, -4.0]], dtype=torch.float64),
                      lambda x: (vector_norm(x, 2, dim=1), None)),
    "norm_inf_ties": (torch.tensor([[3.0, -3.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-2.0, 2.0, 2.0, 1.0]],
                                   dtype=torch.float64),
                      lambda x: (vector_norm(x, inf, dim=1), None)),
    "norm_l2_empty_ax0": (randn(0, 3), lambda x: (vector_norm(x, 2, dim=0), None)),
    "prod_ax1": (signed_uniform(3, 4), lambda x: (torch.prod(x, 1), None)),
    "prod_ax0_keep": (signed_uniform(4, 3), lambda x: (torch.prod(x, 0, keepdim=True), None)),
    "prod_all": (signed_uniform(2, 3), lambda x: (torch.prod(x), None)),
    "prod_zeros_ax1": (torch.tensor([[2.0, -1.5, 3.0], [2.0, 0.0, 3.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]],
                                    dtype=torch.float64),
                       lambda x: (torch.prod(x, 1), None)),
    "prod_zeros_ax0": (torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0], [3.0, 4.0, 1.5]], dtype=torch.float64),
                       lambda x: (torch.prod(x, 0), None)),
    "prod_one_zero_all": (torch.tensor([[2.0, -1.5], [0.0, 3.0]], dtype=torch.float64),
                          lambda x: (torch.prod(x), None)),
    "prod_two_zeros_all": (torch.tensor([[2.0, 0.0], [0.0, 3.0]], dtype=torch.float64),
                           lambda x: (torch.prod(x), None)),
    "prod_empty_ax0": (randn(0, 3), lambda x: (torch.prod(x, 0), None)),
    "cumsum_ax1": (randn(3, 4), lambda x: (torch.cumsum(x, 1), None)),
    "cumsum_ax0": (randn(4, 3), lambda x: (torch.cumsum(x, 0), None)),
    "cumsum_neg2": (randn(2, 3, 4), lambda x: (torch.cumsum(x, -2), None)),
    "cumsum_cancel": (torch.tensor([1e8, 1.0, -1e8, 0.25], dtype=torch.float64),
                      lambda x: (torch.cumsum(x, 0), None)),
}

out = {}
for name, (base, fn) in CASES.items():
    for dtype, tag in [(torch.float32, "float32"), (torch.float64, "float64")]:
        x = base.to(dtype).clone().requires_grad_(True)
        y, idx = fn(x)
        out[f"{name}.{tag}.x"] = x.detach().clone()
        if idx is not None:
            out[f"{name}.{tag}.idx"] = idx.detach().clone().to(torch.int64)
        if y is not None:
            g = torch.randn(y.shape, dtype=torch.float64).to(dtype)
            (dx,) = torch.autograd.grad(y, x, g, allow_unused=False)
            out[f"{name}.{tag}.y"] = y.detach().clone()
            out[f"{name}.{tag}.g"] = g
            out[f"{name}.{tag}.dx"] = dx.detach().clone()

save_file({k: v.contiguous() for k, v in out.items()}, "tests/golden/ops_reductions.safetensors")
print("torch", torch.__version__, "wrote", len(CASES), "cases,", len(out), "tensors")
