"""Golden values for convolution and pooling, from PyTorch.

    python3 tests/golden/ops_conv.py   # writes tests/golden/ops_conv.safetensors

For every case NAME: the inputs NAME.x (and NAME.w, NAME.b for convolutions), a random seed
gradient NAME.g, PyTorch's output NAME.y and gradients NAME.dx (NAME.dw, NAME.db), each as .f32 and
.f64 (computed separately in each type from the same draws), and the settings NAME.cfg (int64):

    conv2d_*   [stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups]
    conv1d_*   [stride, pad, dil, groups]
    maxpool_*  [k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, ceil_mode]
    avgpool_*  [k_h, k_w, stride_h, stride_w, pad_h, pad_w, ceil_mode, count_include_pad, divisor (0 = none)]
    adaptive_* [out_h, out_w]

Read by tests/ops_conv.rs (f32: rtol 1e-5, atol 1e-6; f64: rtol = atol = 1e-12).
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
tensors = {}


INTEGERS = False


def randn(*dims, scale=1.0):
    if INTEGERS:
        # Small integers: every product and partial sum is exact in f32, so the f32 results can
        # be compared at rtol 1e-5 even where a long reduction cancels.
        return torch.randint(-3, 4, dims).to(torch.float64)
    return torch.randn(*dims, dtype=torch.float64) * scale


def record(name, cfg, inputs, run):
    """inputs: dict of f64 tensors (x, w, b); run(dict) -> output."""
    tensors[f"{name}.cfg"] = torch.tensor(cfg, dtype=torch.int64)
    g64 = None
    for dtype, suffix in [(torch.float64, "f64"), (torch.float32, "f32")]:
        leaves = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in inputs.items()}
        y = run(leaves)
        if g64 is None:
            g64 = randn(*y.shape)
        g = g64.to(dtype)
        y.backward(g)
        for k, v in leaves.items():
            tensors[f"{name}.{k}.{suffix}"] = v.detach().clone()
            tensors[f"{name}.d{k}.{suffix}"] = v.grad.detach().clone()
        tensors[f"{name}.y.{suffix}"] = y.detach().clone()
        tensors[f"{name}.g.{suffix}"] = g.clone()


def conv2d_case(name, x_dims, w_dims, stride=1, padding=0, dilation=1, groups=1, bias=True):
    pair = lambda v: (v, v) if isinstance(v, int) else v
    s, p, d = pair(stride), pair(padding), pair(dilation)
    fan_in = w_dims[1] * w_dims[2] * w_dims[3]
    inputs = {"x": randn(*x_dims), "w": randn(*w_dims, scale=fan_in**-0.5)}
    if bias:
        inputs["b"] = randn(w_dims[0])
    record(
        name,
        [s[0], s[1], p[0], p[1], d[0], d[1], groups],
        inputs,
        lambda t: F.conv2d(t["x"], t["w"], t.get("b"), s, p, d, groups),
    )


def conv1d_case(name, x_dims, w_dims, stride=1, padding=0, dilation=1, groups=1):
    fan_in = w_dims[1] * w_dims[2]
    inputs = {"x": randn(*x_dims), "w": randn(*w_dims, scale=fan_in**-0.5), "b": randn(w_dims[0])}
    record(
        name,
        [stride, padding, dilation, groups],
        inputs,
        lambda t: F.conv1d(t["x"], t["w"], t["b"], stride, padding, dilation, groups),
    )


def maxpool_case(name, x, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    pair = lambda v: (v, v) if isinstance(v, int) else v
    k, p, d = pair(k), pair(padding), pair(dilation)
    s = k if stride is None else pair(stride)
    record(
        name,
        [k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], int(ceil_mode)],
        {"x": x},
        lambda t: F.max_pool2d(t["x"], k, s, p, d, ceil_mode),
    )


def avgpool_case(name, x, k, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor=None):
    pair = lambda v: (v, v) if isinstance(v, int) else v
    k, p = pair(k), pair(padding)
    s = k if stride is None else pair(stride)
    record(
        name,
        [k[0], k[1], s[0], s[1], p[0], p[1], int(ceil_mode), int(count_include_pad), divisor or 0],
        {"x": x},
        lambda t: F.avg_pool2d(t["x"], k, s, p, ceil_mode, count_include_pad, divisor),
    )


def adaptive_case(name, x, out):
    out = (out, out) if isinstance(out, int) else out
    record(name, list(out), {"x": x}, lambda t: F.adaptive_avg_pool2d(t["x"], out))


conv2d_case("conv2d_basic", (2, 3, 6, 5), (4, 3, 3, 3), padding=1)
conv2d_case("conv2d_stride", (2, 3, 7, 6), (5, 3, 3, 2), stride=(2, 1), padding=(1, 0))
conv2d_case("conv2d_dilation", (1, 2, 8, 8), (3, 2, 3, 3), padding=(2, 1), dilation=(2, 1))
conv2d_case("conv2d_groups", (2, 4, 5, 5), (6, 2, 3, 3), padding=1, groups=2)
conv2d_case("conv2d_depthwise", (2, 3, 6, 6), (3, 1, 3, 3), stride=2, padding=1, groups=3)
conv2d_case("conv2d_pointwise", (2, 4, 4, 4), (3, 4, 1, 1), bias=False)
conv2d_case("conv2d_nonsquare", (1, 2, 5, 9), (2, 2, 2, 4), stride=(1, 3), padding=(1, 2), dilation=(2, 1))
conv2d_case("conv2d_batch0", (0, 3, 5, 5), (2, 3, 3, 3), padding=1)
conv2d_case("conv2d_digits", (4, 1, 8, 8), (8, 1, 3, 3), padding=1)
INTEGERS = True  # long reductions (many images: several blocks in tapegrad)
conv2d_case("conv2d_many", (19, 2, 6, 6), (4, 2, 3, 3), padding=1)
INTEGERS = False
conv1d_case("conv1d_basic", (2, 3, 10), (4, 3, 3), padding=1)
conv1d_case("conv1d_groups", (2, 4, 9), (4, 2, 3), stride=2, padding=2, dilation=2, groups=2)

maxpool_case("maxpool_2", randn(2, 3, 6, 6), 2)
maxpool_case("maxpool_3s2p1", randn(2, 2, 7, 7), 3, stride=2, padding=1)
maxpool_case("maxpool_ceildil", randn(1, 2, 9, 8), (2, 3), stride=(2, 1), padding=1, dilation=(2, 1), ceil_mode=True)
# Small integers: many tied maxima, overlapping windows.
maxpool_case("maxpool_ties", torch.randint(0, 3, (2, 2, 6, 6)).to(torch.float64), 3, stride=1, padding=1)
avgpool_case("avgpool_2", randn(2, 3, 6, 6), 2)
avgpool_case("avgpool_nopad", randn(2, 2, 7, 6), 3, stride=2, padding=1, count_include_pad=False)
avgpool_case("avgpool_ceil", randn(1, 2, 6, 7), 3, stride=2, padding=1, ceil_mode=True)
avgpool_case("avgpool_divisor", randn(1, 2, 5, 5), 2, stride=1, divisor=3)
adaptive_case("adaptive_3x4", randn(2, 2, 7, 9), (3, 4))
adaptive_case("adaptive_up", randn(1, 2, 3, 4), (5, 6))
adaptive_case("adaptive_global", randn(2, 3, 5, 5), 1)

path = "tests/golden/ops_conv.safetensors"
save_file({k: v.contiguous() for k, v in tensors.items()}, path)
print("torch", torch.__version__, "wrote", len(tensors), "tensors to", path)
