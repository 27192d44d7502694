"""``TensorImageDataset``: a whole dataset held in one tensor, for fast batched loading."""

from __future__ import annotations

import torch

from .augment import normalise, random_crop_flip
from .spec import DataSpec


class TensorImageDataset(torch.utils.data.Dataset):
    """Images and labels in memory, raw (uint8 0..255 or float 0..1), normalised on the way out.

    ``dataset[i]`` gives one normalised, non-augmented ``(float32 CHW, int)`` pair, so a plain
    ``torch.utils.data.DataLoader`` works; ``make_loader`` uses the faster ``batch`` method.

    Attributes:
        images: (N, C, H, W) uint8 or float tensor of raw pixels.
        labels: (N,) int64 tensor.
        spec: the dataset's ``DataSpec`` (mean, std, hflip, sizes).
        augment: default for ``make_loader(augment=None)``: True for a training split loaded with
            ``augment=True``, False otherwise.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, spec: DataSpec, *, augment: bool = False
    ) -> None:
        """Wrap ``images`` (N, C, H, W) and ``labels`` (N,).

        Raises:
            ValueError: shapes or dtypes that do not fit together (a programming error).
        """
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match")
        if not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(f"images must be uint8 or float, got {images.dtype}")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.spec = spec
        self.augment = augment

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x_CHW = normalise(self.images[index], self.spec.mean, self.spec.std)
        return x_CHW, int(self.labels[index])

    def batch(
        self, indices: torch.Tensor, *, augment: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gather, optionally augment, and normalise a batch in a few tensor ops.

        Args:
            indices: (B,) int64 indices into the dataset.
            augment: apply random crop (and flip if ``spec.hflip``) before normalising.
            generator: random source for the augmentation; required when ``augment``.

        Returns:
            ``(x float32 (B, C, H, W) normalised, y int64 (B,))``.
        """
        x_BCHW = self.images[indices]
        if augment:
            if generator is None:
                raise ValueError("augment=True needs a generator, so that runs are reproducible")
            x_BCHW = random_crop_flip(
                x_BCHW, padding=self.spec.crop_padding, hflip=self.spec.hflip, generator=generator
            )
        return normalise(x_BCHW, self.spec.mean, self.spec.std), self.labels[indices]

    @property
    def targets(self) -> torch.Tensor:
        """Labels, under the name torchvision datasets use."""
        return self.labels

    def __repr__(self) -> str:
        return (f"TensorImageDataset({self.spec.name}, n={len(self)}, "
                f"shape={tuple(self.images.shape[1:])}, dtype={self.images.dtype})")
