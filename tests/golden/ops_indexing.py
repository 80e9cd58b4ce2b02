"""Golden values for the indexing, joining, batched-matmul, softmax-axis and loss-option ops.

    python3 tests/golden/ops_indexing.py   # writes tests/golden/ops_indexing.safetensors

For each case and dtype (f32, f64): the inputs `{case}.{dtype}.in{i}`, the output `.out`, a random
seed gradient `.seed`, and the gradient of each input `.grad{i}` (torch.autograd.grad of
(out * seed).sum()). Read by tests/ops_indexing_golden.rs, which builds the same op by name.
"""

import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)

IDS = torch.tensor([[1, 0, 1], [2, 1, 1]])
GATHER = torch.tensor([[2, 0, 1], [2, 2, 2]])
WEIGHT = [0.5, 2.0, 1.0]
LABELS = torch.tensor([[0, 2], [1, -100]])

CASES = {
    "permute": ([(2, 3, 4)], lambda x: x.permute(2, 0, 1)),
    "slice_step": ([(6, 5)], lambda x: x[1:6:2]),
    "narrow": ([(5, 4)], lambda x: x.narrow(1, 1, 2)),
    "select": ([(3, 4, 2)], lambda x: x.select(1, 2)),
    "cat": ([(2, 3), (4, 3)], lambda a, b: torch.cat([a, b, a], 0)),
    "stack": ([(2, 3), (2, 3)], lambda a, b: torch.stack([a, b], 1)),
    "index_select": ([(2, 5, 3)], lambda x: x.index_select(1, torch.tensor([4, 0, 4]))),
    "embedding": ([(3, 4)], lambda t: F.embedding(IDS, t)),
    "embedding_padding": ([(3, 4)], lambda t: F.embedding(IDS, t, padding_idx=1)),
    "gather": ([(2, 3)], lambda x: torch.gather(x, 1, GATHER)),
    "scatter_add": ([(2, 3), (2, 3)], lambda x, s: x.scatter_add(1, GATHER, s)),
    "bmm": ([(2, 3, 4), (2, 4, 5)], lambda a, b: a @ b),
    "bmm_broadcast": ([(2, 1, 3, 4), (3, 4, 2)], lambda a, b: a @ b),
    "matmul_weight": ([(2, 3, 4), (4, 5)], lambda a, b: a @ b),
    "matvec": ([(2, 3, 4), (4,)], lambda a, b: a @ b),
    "vecmat": ([(4,), (2, 4, 3)], lambda a, b: a @ b),
    "softmax_axis1": ([(3, 4, 2)], lambda x: F.softmax(x, 1)),
    "log_softmax_axis0": ([(3, 4, 2)], lambda x: F.log_softmax(x, 0)),
    "cross_entropy_nd": ([(2, 3, 2)], lambda x: F.cross_entropy(x, LABELS)),
    "cross_entropy_options": (
        [(2, 3, 2)],
        lambda x: F.cross_entropy(
            x, LABELS, weight=torch.tensor(WEIGHT, dtype=x.dtype), label_smoothing=0.2
        ),
    ),
    "cross_entropy_sum": ([(2, 3, 2)], lambda x: F.cross_entropy(x, LABELS, reduction="sum")),
    "nll_none_weighted": (
        [(2, 3, 2)],
        lambda x: F.nll_loss(
            x, LABELS, weight=torch.tensor(WEIGHT, dtype=x.dtype), reduction="none"
        ),
    ),
}

tensors = {}
for name, (shapes, f) in CASES.items():
    base = [torch.randn(s, dtype=torch.float64) for s in shapes]
    for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
        inputs = [b.to(dtype).requires_grad_(True) for b in base]
        out = f(*inputs)
        seed = torch.randn(out.shape, dtype=torch.float64).to(dtype)
        grads = torch.autograd.grad((out * seed).sum(), inputs)
        for i, x in enumerate(inputs):
            tensors[f"{name}.{tag}.in{i}"] = x.detach().contiguous()
            tensors[f"{name}.{tag}.grad{i}"] = grads[i].contiguous()
        tensors[f"{name}.{tag}.out"] = out.detach().contiguous()
        tensors[f"{name}.{tag}.seed"] = seed.contiguous()

save_file(tensors, os.path.join(HERE, "ops_indexing.safetensors"))
print("torch", torch.__version__, "wrote", len(CASES), "cases")
