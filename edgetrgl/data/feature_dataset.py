"""Datasets whose samples are not images: vectors ``(D,)``, sequences ``(C, L)``, any shape.

    train, test, spec = tensor_data(x_train, y_train, x_test, y_test, name="sensors")
    edgetrgl.train(cfg, model=my_net, data=(train, test, spec))

The inputs are used as given (scale them yourself): crops and flips are image augmentations, so
these datasets have none.
"""

from __future__ import annotations

import torch

from ._seeding import derive_seed
from .spec import DataSpec
from ..errors import UserError


class TensorFeatureDataset(torch.utils.data.Dataset):
    """Float inputs of any per-sample shape and int64 labels, in memory.

    Attributes:
        inputs: (N, ...) float tensor.
        labels: (N,) int64 tensor.
        spec: the dataset's ``DataSpec`` (``spec.sample_shape`` = ``inputs.shape[1:]``).
        augment: always False (there is no augmentation for non-image data).
    """

    augment = False

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, spec: DataSpec) -> None:
        if inputs.ndim < 2 or labels.ndim != 1 or inputs.shape[0] != labels.shape[0]:
            raise ValueError(f"inputs {tuple(inputs.shape)} and labels {tuple(labels.shape)} do not match")
        self.inputs = inputs.to(torch.float32)
        self.labels = labels.to(torch.int64)
        self.spec = spec

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.inputs[index], int(self.labels[index])

    def batch(self, indices: torch.Tensor, *, augment: bool = False,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs[indices], labels[indices])``; ``augment`` is accepted and ignored (see module doc)."""
        return self.inputs[indices], self.labels[indices]

    @property
    def targets(self) -> torch.Tensor:
        return self.labels

    def __repr__(self) -> str:
        return f"TensorFeatureDataset({self.spec.name}, n={len(self)}, shape={tuple(self.inputs.shape[1:])})"


def tensor_data(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                num_classes: int | None = None, name: str = "tensors"
                ) -> tuple[TensorFeatureDataset, TensorFeatureDataset, DataSpec]:
    """Wrap your own tensors as ``(train, test, spec)`` for :func:`edgetrgl.train`'s ``data=``.

    Args:
        x_train, x_test: (N, ...) inputs; every sample has the same shape, e.g. (D,) or (C, L).
        y_train, y_test: (N,) integer labels in ``0 .. num_classes - 1``.
        num_classes: default: the largest label plus one.
        name: for reports.

    Raises:
        UserError: shapes that do not match, or labels out of range.
    """
    if x_train.ndim < 2 or tuple(x_train.shape[1:]) != tuple(x_test.shape[1:]):
        raise UserError(f"train inputs {tuple(x_train.shape)} and test inputs {tuple(x_test.shape)} "
                        "must share one per-sample shape")
    if y_train.shape != (x_train.shape[0],) or y_test.shape != (x_test.shape[0],):
        raise UserError("labels must be one integer per sample")
    k = int(max(y_train.max(), y_test.max())) + 1 if num_classes is None else num_classes
    if min(int(y_train.min()), int(y_test.min())) < 0 or max(int(y_train.max()), int(y_test.max())) >= k:
        raise UserError(f"labels must lie in 0..{k - 1}")
    shape = tuple(int(d) for d in x_train.shape[1:])
    spec = DataSpec(name=name, num_classes=k, in_channels=shape[0], image_size=shape[-1] if len(shape) > 1 else 1,
                    hflip=False, mean=(), std=(), num_train=len(y_train), num_test=len(y_test), sample_shape=shape)
    return TensorFeatureDataset(x_train, y_train, spec), TensorFeatureDataset(x_test, y_test, spec), spec


def synthetic_features(shape: tuple[int, ...], *, num_classes: int = 4, num_train: int = 512, num_test: int = 128,
                       noise: float = 1.0, seed: int = 0) -> tuple[TensorFeatureDataset, TensorFeatureDataset, DataSpec]:
    """A small separable task of any sample shape: each class is a random pattern plus Gaussian noise.

    For ``(C, L)`` shapes the pattern is shifted by up to L/8 positions per sample, so a sequence
    model must find it, not read single positions.

    Returns:
        ``(train, test, spec)`` as :func:`tensor_data`; same arguments, same tensors.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, 11))
    protos = torch.randn(num_classes, *shape, generator=g)

    def draw(n: int, part: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(derive_seed(seed, part))
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]
        x = protos[y]
        if len(shape) == 2:
            shifts = torch.randint(-max(1, shape[1] // 8), max(1, shape[1] // 8) + 1, (n,), generator=gen)
            x = torch.stack([torch.roll(s, int(d), dims=1) for s, d in zip(x, shifts)])
        return x + noise * torch.randn(x.shape, generator=gen), y

    (xa, ya), (xb, yb) = draw(num_train, 12), draw(num_test, 13)
    return tensor_data(xa, ya, xb, yb, num_classes=num_classes, name=f"synthetic{'x'.join(map(str, shape))}")
