"""The network truncated at one module, with that module's head: a complete, smaller classifier.

Module-wise training gives early exit for free: module k's auxiliary head was trained to classify
from module k's output, so stages 1..k plus head k is a network on its own. The exported model
takes images as a float batch (N, C, H, W) on the 0..1 pixel scale and normalises them itself with
the dataset's mean and std, so a deployment needs no preprocessing code beyond resizing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgetrgl.errors import UserError
from edgetrgl.modular import ModularNet
from edgetrgl.objectives import classifier_of

METADATA_FORMAT = "edgetrgl-export/1"


class EarlyExitNet(nn.Module):
    """Stages 1..k and head k of a :class:`ModularNet`, with the input normalisation built in.

    Args:
        stages: the first k stages (shared, not copied).
        head: the auxiliary head of stage k.
        mean, std: per-channel normalisation on the 0..1 scale (the dataset's).
    """

    def __init__(self, stages: list[nn.Module], head: nn.Module, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.stages = nn.Sequential(*stages)
        self.head = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) of images (N, C, H, W), float, pixels on the 0..1 scale."""
        return self.head(self.stages((images - self.mean) / self.std))


def build_early_exit(net: ModularNet, exit_index: int, mean: tuple, std: tuple) -> EarlyExitNet:
    """Early-exit network at module ``exit_index`` (0-based), in eval mode."""
    # the classifier only: an objective's decoder or projection is training machinery, not the model
    model = EarlyExitNet(list(net.stages[: exit_index + 1]), classifier_of(net.heads[exit_index]), mean, std)
    return model.eval()


def resolve_exit(exit: str | int, modules: list[dict[str, Any]]) -> int:
    """Turn ``best``, ``last`` or a 1-based module number into a 0-based index.

    Args:
        exit: ``"best"`` (highest validation accuracy; highest test accuracy for a run without a
            validation split), ``"last"``, or K as an int or a string.
        modules: the run's per-module records (``summary.json``'s ``modules``).

    Raises:
        UserError: anything else, or a module number outside 1..K.
    """
    count = len(modules)
    if exit == "best":
        from edgetrgl.training.results import pick_best  # the one rule the run's summary follows too

        return pick_best(modules)[0]
    if exit == "last":
        return count - 1
    try:
        number = int(exit)
    except (TypeError, ValueError):
        raise UserError(f"--exit must be best, last or a module number 1..{count}, got {exit!r}") from None
    if not 1 <= number <= count:
        raise UserError(f"--exit {number} is beyond the run's {count} module(s): choose 1..{count}, best or last")
    return number - 1


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
