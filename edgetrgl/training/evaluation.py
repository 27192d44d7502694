"""Test accuracy of the heads."""

from __future__ import annotations

import torch

from edgetrgl._faults import crash_point
from edgetrgl.data import make_loader
from edgetrgl.step import count_correct


@torch.no_grad()
def evaluate_heads(net, dataset, batch_size: int, device: torch.device | str) -> list[float]:
    """Test accuracy of every module's head on ``dataset``, in one pass (eval mode, no augmentation)."""
    net.eval()
    correct, total = [0] * net.num_modules, 0
    for x, y in make_loader(dataset, batch_size, shuffle=False, augment=False, seed=0):
        x, y = x.to(device), y.to(device)
        for k in range(net.num_modules):
            x = net.stages[k](x)
            correct[k] += count_correct(net.heads[k](x), y)
        total += y.numel()
        crash_point("evaluate")
    return [c / max(total, 1) for c in correct]


@torch.no_grad()
def module_accuracy(stage, head, batches) -> float:
    """Test accuracy of one module's head on its inputs ``batches`` (``(x, y)``, x the stage's input)."""
    stage.eval(), head.eval()
    correct = total = 0
    for x, y in batches:
        correct += count_correct(head(stage(x)), y)
        total += y.numel()
        crash_point("evaluate")
    return correct / max(total, 1)
