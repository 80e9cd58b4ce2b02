"""Golden values for tapegrad::functional (tests/gradtest.rs): jacobian, hessian, vjp, jvp.

    python3 tests/golden/functional.py   # writes tests/golden/functional.safetensors

For every case and dtype (float32, float64) the file holds, under `{case}.{dtype}.`:
`in{k}` (the inputs), `out{i}` (the outputs), `jac{i}_{k}` (torch.autograd.functional.jacobian:
output i by input k), `vjp_v{i}` / `vjp{k}` (the cotangents, one per output, drawn at random, and
vjp's result per input), `jvp_v{k}` / `jvp{i}` (the tangents, one per input, and jvp's result per
output), and for the scalar cases `hess{k}_{l}` (torch.autograd.functional.hessian). The inputs
are drawn in float64 and rounded to float32 for the float32 cases. The Rust test defines the same
functions under the same case names; a new case here needs one there.
"""

import torch
from torch.autograd.functional import hessian, jacobian, jvp, vjp
from safetensors.torch import save_file

torch.manual_seed(0)


def randn(*shape):
    return torch.randn(shape, dtype=torch.float64)


# name -> (inputs, function of the inputs returning a tuple of outputs, scalar?)
CASES = {
    # An affine layer with tanh, and a row-wise sum of squares: two outputs, three inputs.
    "layer": (
        (randn(3, 4), randn(4, 2), randn(2)),
        lambda x, w, b: (torch.tanh(x @ w + b), (x * x).sum(1)),
        False,
    ),
    # Softmax of a vector: a dense Jacobian.
    "softmax": ((randn(5),), lambda x: (torch.softmax(x, -1),), False),
    # Broadcasting product with exp, rank 3 output from a rank 2 and a rank 1 input.
    "broadcast": (
        (randn(2, 3), randn(3)),
        lambda a, b: (torch.exp(a * b) - a,),
        False,
    ),
    # Scalar functions, for the Hessian too.
    "cubic": (
        (randn(3), randn(3)),
        lambda x, y: ((x ** 3 * y).sum() + (x * y).sum() ** 2,),
        True,
    ),
    "lse_sin": (
        (randn(4),),
        lambda x: (torch.logsumexp(x, 0) + (torch.sin(x) * x).sum(),),
        True,
    ),
    "tanh_matmul": (
        (randn(2, 3), randn(3, 2)),
        lambda x, w: (torch.tanh(x @ w).sum(),),
        True,
    ),
}

out = {}
for name, (inputs64, fn, scalar) in CASES.items():
    outs64 = fn(*inputs64)
    vjp_v64 = tuple(randn(*o.shape) for o in outs64)
    jvp_v64 = tuple(randn(*x.shape) for x in inputs64)
    for dtype, tname in ((torch.float32, "float32"), (torch.float64, "float64")):
        inputs = tuple(x.to(dtype) for x in inputs64)
        vv = tuple(v.to(dtype) for v in vjp_v64)
        jv = tuple(v.to(dtype) for v in jvp_v64)
        p = f"{name}.{tname}."
        outs = fn(*inputs)
        for k, x in enumerate(inputs):
            out[p + f"in{k}"] = x
        for i, o in enumerate(outs):
            out[p + f"out{i}"] = o.detach()
        jac = jacobian(fn, inputs)
        for i in range(len(outs)):
            for k in range(len(inputs)):
                out[p + f"jac{i}_{k}"] = jac[i][k]
        _, vjp_res = vjp(fn, inputs, vv)
        for i, v in enumerate(vv):
            out[p + f"vjp_v{i}"] = v
        for k, r in enumerate(vjp_res):
            out[p + f"vjp{k}"] = r
        _, jvp_res = jvp(fn, inputs, jv)
        for k, v in enumerate(jv):
            out[p + f"jvp_v{k}"] = v
        for i, r in enumerate(jvp_res):
            out[p + f"jvp{i}"] = r
        if scalar:
            h = hessian(lambda *xs: fn(*xs)[0], inputs)
            for k in range(len(inputs)):
                for l in range(len(inputs)):
                    out[p + f"hess{k}_{l}"] = h[k][l]

out = {k: v.contiguous() for k, v in out.items()}
save_file(out, "tests/golden/functional.safetensors")
print(f"{len(out)} tensors")
