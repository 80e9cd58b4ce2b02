"""Writes the PyTorch reference trajectories that tests/pytorch_parity.rs compares against.

Not run by CI (it needs torch). Regenerate with:

    pip install torch safetensors numpy
    python3 tests/golden/make_golden.py

For the lesson's model, Sequential(Linear(20, 64), ReLU, Dropout(0.5), Linear(64, 5)) with
CrossEntropyLoss in float32, it records the initial weights, the inputs and labels, one fixed dropout
mask per step, and for 20 steps of each optimizer the loss, the gradients and the parameters after
the step. Dropout is applied exactly as F.dropout does (x * (mask / (1 - p))) but with the recorded
mask, so that both engines see the same mask.
"""

import os

import torch
from safetensors.torch import save_file

N, D, H, K, P, STEPS = 128, 20, 64, 5, 0.5, 20
HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["0.weight", "0.bias", "3.weight", "3.bias"]


def model_and_data():
    torch.manual_seed(0)
    x = torch.randn(N, D)
    labels = torch.randint(0, K, (N,))
    model = torch.nn.Sequential(
        torch.nn.Linear(D, H), torch.nn.ReLU(), torch.nn.Dropout(P), torch.nn.Linear(H, K)
    )
    masks = [(torch.rand(N, H) >= P) for _ in range(STEPS)]
    return model, x, labels, masks


def forward(model, x, mask):
    h = torch.relu(model[0](x))
    h = h * (mask.to(h.dtype) / (1 - P))
    return model[3](h)


def run(name, make_optimizer):
    model, x, labels, masks = model_and_data()
    out = {"x": x, "labels": labels.to(torch.int64)}
    for n, p in model.state_dict().items():
        out[f"init.{n}"] = p.clone()
    optimizer = make_optimizer(model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    for step in range(STEPS):
        out[f"mask.{step}"] = masks[step].to(torch.uint8)
        optimizer.zero_grad()
        loss = loss_fn(forward(model, x, masks[step]), labels)
        loss.backward()
        out[f"loss.{step}"] = loss.detach().reshape(1)
        params = dict(model.named_parameters())
        for n in NAMES:
            out[f"grad.{step}.{n}"] = params[n].grad.clone()
        optimizer.step()
        for n in NAMES:
            out[f"param.{step}.{n}"] = params[n].detach().clone()
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(HERE, f"lesson_{name}.safetensors"))
    print(f"{name}: final loss {out[f'loss.{STEPS - 1}'].item():.6f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    # A plain state_dict, as a PyTorch user would save it, for the checkpoint-loading test.
    model, _, _, _ = model_and_data()
    save_file(model.state_dict(), os.path.join(HERE, "lesson_state_dict.safetensors"))
    run("sgd_nesterov", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3))
    run("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2))
    print("torch", torch.__version__)
