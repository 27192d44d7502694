"""``FileImageDataset``: images decoded one at a time from disk (torchvision sets, ImageFolder)."""

from __future__ import annotations

import torch

from .augment import normalise
from .spec import DataSpec


def base_targets(base) -> torch.Tensor:
    """Labels of a torchvision dataset without decoding its images, as an int64 tensor."""
    labels = getattr(base, "targets", None)
    if labels is None:
        labels = base.labels  # SVHN and STL10 name them ``labels``
    return torch.as_tensor(labels, dtype=torch.int64)


class FileImageDataset(torch.utils.data.Dataset):
    """A view of a torchvision dataset (returning PIL images): subset, colour mode, size.

    ``dataset[i]`` gives one normalised, non-augmented ``(float32 CHW, int)`` pair;
    ``make_loader`` wraps it in a ``DataLoader`` that adds seeded augmentation.

    Attributes:
        base: the torchvision dataset; its ``transform`` must be None (it returns PIL images).
        indices: (N,) int64 indices into ``base`` (the ``train_fraction`` subset, or all).
        spec: the dataset's ``DataSpec``; ``spec.image_size`` is the output size.
        mode: PIL mode the images are converted to: ``"L"`` (1 channel) or ``"RGB"`` (3).
        augment: default for ``make_loader(augment=None)``.
    """

    def __init__(self, base, indices: torch.Tensor, spec: DataSpec, *, mode: str,
                 augment: bool = False) -> None:
        self.base = base
        self.indices = torch.as_tensor(indices, dtype=torch.int64)
        self.spec = spec
        self.mode = mode
        self.augment = augment
        self._targets = base_targets(base)[self.indices]

    def __len__(self) -> int:
        return self.indices.numel()

    def raw(self, index: int) -> tuple[torch.Tensor, int]:
        """Decode image ``index`` as uint8 (C, H, W) at ``spec.image_size``, with its label."""
        image, label = self.base[int(self.indices[index])]
        return fit_image(image, self.mode, self.spec.image_size), int(label)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x_CHW, label = self.raw(index)
        return normalise(x_CHW, self.spec.mean, self.spec.std), label

    @property
    def targets(self) -> torch.Tensor:
        """(N,) int64 labels of this view, read without decoding images."""
        return self._targets

    def __repr__(self) -> str:
        return f"FileImageDataset({self.spec.name}, n={len(self)}, mode={self.mode}, size={self.spec.image_size})"


def fit_image(image, mode: str, size: int) -> torch.Tensor:
    """Convert a PIL ``image`` to ``mode`` (``"L"`` or ``"RGB"``) and ``size`` x ``size`` as uint8 (C, H, W).

    Training, testing and ``edgetrgl predict`` all go through here, so they see images alike.
    """
    from torchvision.transforms import functional as TF  # lazy: see torchvision_sets._build

    if image.mode != mode:
        image = image.convert(mode)
    if image.size != (size, size):
        # Shorter side to ``size`` then a centre crop: keeps the aspect ratio of odd-shaped photos.
        image = TF.center_crop(TF.resize(image, size, antialias=True), [size, size])
    return TF.pil_to_tensor(image)


def open_image(path: str):
    """Open an image fully (no lazy file handle kept open) and leave its colour mode alone; a PIL image."""
    from PIL import Image

    with open(path, "rb") as fh:
        image = Image.open(fh)
        image.load()
    return image
