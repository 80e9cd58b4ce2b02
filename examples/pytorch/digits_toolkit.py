"""PyTorch twin of examples/digits_toolkit.rs: softmax regression and an MLP on the digits, a data
loader, AdamW with a cosine schedule, early stopping on a validation split, the best weights kept."""
import copy
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset, random_split


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def fit(name, model, data):
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = data
    epochs, patience = 100, 10
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=64, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs, 0.0)
    best, best_loss, waited = copy.deepcopy(model.state_dict()), float("inf"), 0
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        schedule.step()
        val_loss, val_acc = evaluate(model, val_x, val_y)
        if val_loss < best_loss:
            best, best_loss, waited = copy.deepcopy(model.state_dict()), val_loss, 0
        else:
            waited += 1
            if waited == patience:
                print(f"{name}: early stop after epoch {epoch}")
                break
        print(f"{name} epoch {epoch:>3}: val loss {val_loss:.4f}, val acc {val_acc:.3f}")
    model.load_state_dict(best)
    test_loss, test_acc = evaluate(model, test_x, test_y)
    print(f"{name}: val loss {best_loss:.4f}; test loss {test_loss:.4f}, accuracy {test_acc:.4f}")


def main():
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    parts = random_split(range(len(y)), [1150, 287, 360], torch.Generator().manual_seed(0))
    data = [(x[list(s)], y[list(s)]) for s in parts]
    torch.manual_seed(2)
    fit("softmax regression", nn.Sequential(nn.Linear(64, 10)), data)
    fit("MLP", nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), data)


main()
