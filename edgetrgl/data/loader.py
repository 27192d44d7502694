"""``make_loader``: reproducible batches of normalised float32 images for one epoch."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset

from ._seeding import derive_seed
from .augment import normalise, random_crop_flip
from .feature_dataset import TensorFeatureDataset
from .file_dataset import FileImageDataset
from .tensor_dataset import TensorImageDataset
from ..errors import UserError


class TensorBatchLoader:
    """Batches straight from an in-memory dataset (images or features): one gather per batch, no workers.

    Iterating twice replays the same batches: the permutation and the augmentation both come
    from one generator seeded by ``(seed, epoch)`` at the start of each iteration.
    """

    def __init__(self, dataset: TensorImageDataset, batch_size: int, *, shuffle: bool,
                 augment: bool, seed: int, epoch: int, drop_last: bool) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.epoch = epoch
        self.drop_last = drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            indices = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.dataset.batch(indices, augment=self.augment, generator=generator)


class _EpochView(Dataset):
    """One epoch's view of a ``FileImageDataset``: sample ``i`` augmented with its own seed.

    Why a seed per sample rather than torchvision's random transforms: those draw from the global
    RNG, which a DataLoader with ``num_workers=0`` does not seed, so the augmentation would not
    replay. Seeding by ``(seed, epoch, i)`` replays whatever the worker count or batch order.
    """

    def __init__(self, dataset: FileImageDataset, *, augment: bool, seed: int, epoch: int) -> None:
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x_CHW, label = self.dataset.raw(index)
        spec = self.dataset.spec
        if self.augment:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, index))
            x_CHW = random_crop_flip(x_CHW[None], padding=spec.crop_padding, hflip=spec.hflip,
                                     generator=generator)[0]
        return normalise(x_CHW, spec.mean, spec.std), label


class FileBatchLoader:
    """A ``DataLoader`` over an ``_EpochView``, rebuilt on each iteration so that it replays.

    (A ``DataLoader`` keeps advancing its shuffle generator, so a second pass would differ.)
    """

    def __init__(self, view: _EpochView, batch_size: int, *, shuffle: bool, drop_last: bool,
                 num_workers: int) -> None:
        self.view = view
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = num_workers

    def __len__(self) -> int:
        n = len(self.view)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.view.seed, self.view.epoch))
        loader = DataLoader(self.view, batch_size=self.batch_size, shuffle=self.shuffle,
                            drop_last=self.drop_last, num_workers=self.num_workers,
                            generator=generator)
        return iter(loader)


def make_loader(
    dataset: TensorImageDataset | FileImageDataset,
    batch_size: int,
    *,
    shuffle: bool,
    augment: bool | None = None,
    seed: int,
    epoch: int = 0,
    drop_last: bool = False,
    num_workers: int = 0,
):
    """Batches ``(x float32 (B, C, H, W) normalised, y int64 (B,))`` for one epoch.

    The same ``(seed, epoch)`` gives the same order and the same augmentation; another epoch
    gives another. ``augment=False`` gives the plain normalised images.

    Args:
        dataset: a split returned by ``load_dataset``.
        batch_size: images per batch (the last one may be smaller unless ``drop_last``).
        shuffle: visit the images in a seeded random order.
        augment: random crop (zero padding: 4 px for 32 px and larger images, 2 px from 16 px,
            else 1) and horizontal flip if ``dataset.spec.hflip``; None uses ``dataset.augment``.
        seed: run seed.
        epoch: epoch number, mixed into the seed.
        drop_last: drop a last, incomplete batch.
        num_workers: worker processes for file-backed datasets; in-memory ones never use workers.

    Returns:
        An iterable with ``len()`` = number of batches; iterating it again replays the epoch.

    Raises:
        UserError: ``batch_size`` is not a positive integer.
        TypeError: ``dataset`` is not one of this package's datasets.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch size must be a positive integer, got {batch_size!r}")
    if augment is None:
        augment = dataset.augment
    if isinstance(dataset, (TensorImageDataset, TensorFeatureDataset)):
        return TensorBatchLoader(dataset, batch_size, shuffle=shuffle, augment=augment, seed=seed,
                                 epoch=epoch, drop_last=drop_last)
    if isinstance(dataset, FileImageDataset):
        view = _EpochView(dataset, augment=augment, seed=seed, epoch=epoch)
        return FileBatchLoader(view, batch_size, shuffle=shuffle, drop_last=drop_last,
                               num_workers=num_workers)
    raise TypeError(f"make_loader takes a dataset from load_dataset or tensor_data, got {type(dataset).__name__}")
