"""Loads a checkpoint written by tapegrad into the same PyTorch model and prints its logits for an
input of ones, to compare with what `seed_nn --save` printed. Not run by CI.

    cargo run --release --example seed_nn -- --save /tmp/seed_nn.safetensors
    python3 tests/golden/load_in_pytorch.py /tmp/seed_nn.safetensors
"""

import sys

import torch
from safetensors.torch import load_file

model = torch.nn.Sequential(
    torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 5)
)
model.load_state_dict(load_file(sys.argv[1]))  # strict: every name and shape must match
model.eval()
with torch.no_grad():
    logits = model(torch.ones(1, 20))[0].tolist()
print("logits for an input of ones: [" + ", ".join(f"{v:.5f}" for v in logits) + "]")
