"""Golden values for dropout's scale in f32: the value PyTorch gives a kept element of 1.0.

    python3 tests/golden/make_dropout_golden.py   # writes tests/golden/dropout_scale_f32.safetensors

For every p = k/1000 (k = 1..999), F.dropout(ones(4096), p) keeps some elements; each kept one
equals PyTorch's scale 1/(1 − p) computed in the tensor's type. Read by tests/dropout.rs.
"""

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
ps, kept = [], []
for k in range(1, 1000):
    p = k / 1000
    out = F.dropout(torch.ones(4096), p, training=True)
    values = out[out != 0].unique()
    assert values.numel() == 1, (p, values)
    ps.append(p)
    kept.append(values.item())

save_file(
    {
        "p": torch.tensor(ps, dtype=torch.float64),
        "kept": torch.tensor(kept, dtype=torch.float32),
    },
    "tests/golden/dropout_scale_f32.safetensors",
)
print("torch", torch.__version__, "wrote", len(ps), "scales")
