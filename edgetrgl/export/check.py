"""The export check: the exported file, loaded back with its own runtime, against the run's forward.

Both see the whole test set. The reference is the run's own network, ``ModularNet.forward(x,
exit_at=k)`` on the normalised images the training loop evaluates; the export gets the same images
on the 0..1 scale and normalises them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from edgetrgl.data import FileImageDataset, TensorImageDataset, normalise
from edgetrgl.export.formats import Runner
from edgetrgl.modular import ModularNet


@dataclass
class CheckResult:
    """How the export agrees with the run on the test set."""

    samples: int
    max_abs_diff: float  # largest |logit difference| over every sample and class
    agreement: float  # share of samples whose predicted class is the same
    accuracy: float  # the export's own test accuracy

    @property
    def passed(self) -> bool:
        return self.samples > 0 and self.agreement == 1.0

    def to_dict(self) -> dict:
        return {"samples": self.samples, "max_abs_diff": self.max_abs_diff, "agreement": self.agreement,
                "accuracy": self.accuracy, "passed": self.passed}


def raw_batches(dataset, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The dataset's images, not normalised, as ``(uint8 or float 0..1 (B, C, H, W), labels (B,))``."""
    n = len(dataset)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        if isinstance(dataset, TensorImageDataset):
            yield dataset.images[index], dataset.labels[index]
        elif isinstance(dataset, FileImageDataset):
            pairs = [dataset.raw(int(i)) for i in index]
            yield torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
        else:
            raise TypeError(f"cannot read raw images from {type(dataset).__name__}")


def to_unit_scale(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float 0..1 pixels as float32 on 0..1 (the exported model's input)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)


@torch.no_grad()
def check_export(runner: Runner, net: ModularNet, exit_index: int, test_set, mean: tuple, std: tuple,
                 batch_size: int = 256) -> CheckResult:
    """Compare ``runner`` with ``net.forward(exit_at=exit_index)`` on every test image."""
    net.eval()
    samples = same = correct = 0
    max_diff = 0.0
    for raw, labels in raw_batches(test_set, batch_size):
        reference = net(normalise(raw, mean, std), exit_at=exit_index)
        exported = runner(to_unit_scale(raw)).to(reference.dtype)
        max_diff = max(max_diff, float((exported - reference).abs().max()))
        predicted = exported.argmax(dim=1)
        same += int((predicted == reference.argmax(dim=1)).sum())
        correct += int((predicted == labels).sum())
        samples += labels.numel()
    return CheckResult(samples, max_diff, same / max(samples, 1), correct / max(samples, 1))
