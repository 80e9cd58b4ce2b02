"""PyTorch twin of examples/sine.rs: regression of sin(3x) on [-2, 2] from 256 samples with
an MLP 1 -> 64 -> 64 -> 1 (tanh), full-batch Adam with a step schedule."""
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.rand(256, 1) * 4 - 2
y = torch.sin(3 * x)
model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
schedule = torch.optim.lr_scheduler.StepLR(opt, 1000, 0.1)
for step in range(3000):
    opt.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    schedule.step()
    if step % 500 == 0:
        print(f"step {step:>4}: loss {loss.item():.5f}")
grid = torch.linspace(-2, 2, 401).reshape(401, 1)
with torch.no_grad():
    rmse = (model(grid) - torch.sin(3 * grid)).pow(2).mean().sqrt()
print(f"RMSE against sin(3x) on a grid of 401 points: {rmse:.4f}")
