"""Golden values for the fused linear map, from PyTorch's F.linear.

    python3 tests/golden/ops_linear.py   # writes tests/golden/ops_linear.safetensors

For every case NAME: the inputs NAME.x, NAME.w (and NAME.b when the case has a bias), a random
seed gradient NAME.g, PyTorch's output NAME.y and gradients NAME.dx, NAME.dw (NAME.db), each as
.f32 and .f64 (computed separately in each type from the same f64 draws).

Read by tests/ops_linear.rs (f32: rtol 1e-5, atol 1e-6; f64: rtol = atol = 1e-12).
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
tensors = {}


def case(name, x_dims, out_features, bias=True):
    in_features = x_dims[-1]
    inputs = {
        "x": torch.randn(*x_dims, dtype=torch.float64),
        "w": torch.randn(out_features, in_features, dtype=torch.float64) * max(in_features, 1) ** -0.5,
    }
    if bias:
        inputs["b"] = torch.randn(out_features, dtype=torch.float64)
    g64 = None
    for dtype, suffix in [(torch.float64, "f64"), (torch.float32, "f32")]:
        leaves = {k: v.to(dtype).clone().requires_grad_(True) for k, v in inputs.items()}
        y = F.linear(leaves["x"], leaves["w"], leaves.get("b"))
        if g64 is None:
            g64 = torch.randn(*y.shape, dtype=torch.float64)
        g = g64.to(dtype)
        y.backward(g)
        for k, v in leaves.items():
            tensors[f"{name}.{k}.{suffix}"] = v.detach().clone()
            tensors[f"{name}.d{k}.{suffix}"] = v.grad.detach().clone()
        tensors[f"{name}.y.{suffix}"] = y.detach().clone()
        tensors[f"{name}.g.{suffix}"] = g.clone()


case("rows", [7, 5], 3)
case("rows_nobias", [7, 5], 3, bias=False)
case("vector", [5], 4)
case("batched", [2, 3, 6], 4)
case("batched_nobias", [2, 3, 6], 4, bias=False)
case("wide", [33, 130], 70)
case("empty_rows", [0, 4], 3)
case("no_inputs", [3, 0], 2)
case("no_outputs", [3, 4], 0)
case("one", [1, 1], 1)

save_file(tensors, "tests/golden/ops_linear.safetensors")
print(f"{len(tensors)} tensors")
