"""Golden training trajectories of the example models, from PyTorch (run by hand, not by CI).

    python3 tests/golden/models.py   # writes tests/golden/models.safetensors

makemore (examples/makemore/model.rs): embedding table [27, 10] -> Linear(30, 200) -> tanh ->
Linear(200, 27) -> cross-entropy, SGD lr 0.1, batch 32, five steps on fixed batches. Recorded:
the initial parameters (`makemore.init.<name>`), each step's batch (`makemore.x<k>` int64 [32, 3],
`makemore.y<k>` int64 [32]) and loss (`makemore.loss<k>`), the first step's gradients
(`makemore.grad0.<name>`) and the parameters after the last step (`makemore.final.<name>`), in
f32. The parameter names are the model's state_dict names, which tapegrad's model shares.

digits CNN (examples/digits_cnn/model.rs): Conv2d(1, 32, 3, padding 1) -> ReLU -> MaxPool2d(2) ->
Conv2d(32, 64, 3, padding 1) -> ReLU -> Flatten -> Dropout(0.25) -> Linear(1024, 10), Adam lr 1e-3,
five steps on batches of 64 random 8x8 images in [0, 1) with dropout off (eval mode). Recorded
under `cnn.` as for makemore (`cnn.x<k>` is f32 [64, 64]).
"""
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
out = {}


class Makemore(nn.Module):
    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(27, 10))
        self.hidden = nn.Linear(30, 200)
        self.out = nn.Linear(200, 27)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(self.table[x].view(-1, 30))))


model = Makemore()
for name, p in model.state_dict().items():
    out[f"makemore.init.{name}"] = p.detach().clone()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for k in range(5):
    x = torch.randint(0, 27, (32, 3))
    y = torch.randint(0, 27, (32,))
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if k == 0:
        for name, p in model.named_parameters():
            out[f"makemore.grad0.{name}"] = p.grad.detach().clone()
    opt.step()
    out[f"makemore.x{k}"] = x
    out[f"makemore.y{k}"] = y
    out[f"makemore.loss{k}"] = loss.detach().reshape(1)
for name, p in model.state_dict().items():
    out[f"makemore.final.{name}"] = p.detach().clone()

cnn = nn.Sequential(
    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Dropout(0.25),
    nn.Linear(1024, 10),
).eval()
for name, p in cnn.state_dict().items():
    out[f"cnn.init.{name}"] = p.detach().clone()
opt = torch.optim.Adam(cnn.parameters(), lr=1e-3)
for k in range(5):
    x = torch.rand(64, 64)
    y = torch.randint(0, 10, (64,))
    opt.zero_grad()
    loss = F.cross_entropy(cnn(x.view(64, 1, 8, 8)), y)
    loss.backward()
    if k == 0:
        for name, p in cnn.named_parameters():
            out[f"cnn.grad0.{name}"] = p.grad.detach().clone()
    opt.step()
    out[f"cnn.x{k}"] = x
    out[f"cnn.y{k}"] = y
    out[f"cnn.loss{k}"] = loss.detach().reshape(1)
for name, p in cnn.state_dict().items():
    out[f"cnn.final.{name}"] = p.detach().clone()

path = pathlib.Path(__file__).with_name("models.safetensors")
save_file({k: v.contiguous() for k, v in out.items()}, str(path))
print(f"wrote {len(out)} tensors to {path}")
