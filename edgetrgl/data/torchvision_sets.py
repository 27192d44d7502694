"""The torchvision datasets: MNIST, Fashion-MNIST, CIFAR-10/100, SVHN, STL-10 (need a download)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ._subsets import stratified_subset
from .file_dataset import FileImageDataset, base_targets
from .spec import DataSpec
from ..errors import UserError


@dataclass(frozen=True)
class TorchvisionSet:
    """How to build one torchvision dataset and what it looks like."""

    cls_name: str  # attribute of ``torchvision.datasets``, resolved when the set is built
    num_classes: int
    channels: int
    size: int
    hflip: bool
    mean: tuple
    std: tuple
    split_arg: bool  # True: ``split="train"/"test"``; False: ``train=True/False``
    probe: str  # a path under the data root that exists once the set is downloaded (for `edgetrgl datasets`)
    subdir: str = ""  # SVHN drops its files straight into root, so give it its own folder


# Mean/std are the commonly published training-set statistics (0..1 pixel scale).
TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    "mnist": TorchvisionSet("MNIST", 10, 1, 28, False, (0.1307,), (0.3081,), False, "MNIST/raw"),
    # Clothes may be mirrored: flips are a valid augmentation. Read by fashion_mnist.py, not torchvision.
    "fashionmnist": TorchvisionSet("FashionMNIST", 10, 1, 28, True, (0.2860,), (0.3530,), False,
                                   "FashionMNIST/raw"),
    "cifar10": TorchvisionSet("CIFAR10", 10, 3, 32, True,
                              (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), False, "cifar-10-batches-py"),
    "cifar100": TorchvisionSet("CIFAR100", 100, 3, 32, True,
                               (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), False, "cifar-100-python"),
    # Digits: a flipped 2 is not a 2.
    "svhn": TorchvisionSet("SVHN", 10, 3, 32, False,
                           (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), True, "svhn/train_32x32.mat", "svhn"),
    "stl10": TorchvisionSet("STL10", 10, 3, 96, True,
                            (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), True, "stl10_binary"),
}


def default_data_dir() -> Path:
    """Where downloaded datasets live: ``$EDGETRGL_DATA`` or ``~/.cache/edgetrgl/data``."""
    return Path(os.environ.get("EDGETRGL_DATA", "~/.cache/edgetrgl/data")).expanduser()


def build_torchvision(name: str, entry: TorchvisionSet, root: Path, train: bool, download: bool):
    """Instantiate the torchvision dataset for one split, turning "not there" into a UserError."""
    # Imported here, not at the top: torchvision costs ~100 MiB of RSS (it pulls in torch._dynamo),
    # which every ``import edgetrgl`` would otherwise pay, even with the bundled or synthetic data.
    from torchvision import datasets

    split = {"split": "train" if train else "test"} if entry.split_arg else {"train": train}
    try:
        return getattr(datasets, entry.cls_name)(str(root / entry.subdir), download=download, **split)
    except (RuntimeError, OSError) as err:
        if download:
            raise UserError(f"could not download {name} into {root}: {err}") from err
        if isinstance(err, OSError):
            raise UserError(f"could not read {name} from {root}: {err}") from err
        # torchvision raises RuntimeError("Dataset not found ...") without touching the network.
        raise UserError(f"{name} is not in {root}; pass --download to fetch it, "
                        "or --data-dir to point at a copy") from err


def load_torchvision(
    name: str, *, data_dir, download: bool, augment: bool, train_fraction: float, seed: int,
    image_size: int | None,
) -> tuple[FileImageDataset, FileImageDataset, DataSpec]:
    """Load a torchvision dataset from ``data_dir`` (default ``default_data_dir()``).

    Args:
        name: a key of ``TORCHVISION_SETS``.
        data_dir: root folder of the downloaded files.
        download: fetch the files if they are missing.
        augment: default augmentation of the training split.
        train_fraction: stratified fraction of the training split to keep.
        seed: picks the ``train_fraction`` subset.
        image_size: resize to this size (default: the dataset's own).

    Returns:
        ``(train, test, spec)``.

    Raises:
        UserError: the folder or the files are missing and ``download`` is False, or the
            download failed.
    """
    entry = TORCHVISION_SETS[name]
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if not root.is_dir():
        if not download:
            raise UserError(f"data folder {root} does not exist; pass --download to fetch {name}, "
                            "or --data-dir to point at a copy")
        root.mkdir(parents=True, exist_ok=True)
    train_base = build_torchvision(name, entry, root, True, download)
    test_base = build_torchvision(name, entry, root, False, download)
    keep = stratified_subset(base_targets(train_base), train_fraction, seed)
    spec = DataSpec(name=name, num_classes=entry.num_classes, in_channels=entry.channels,
                    image_size=image_size or entry.size, hflip=entry.hflip, mean=entry.mean,
                    std=entry.std, num_train=keep.numel(), num_test=len(test_base))
    mode = "L" if entry.channels == 1 else "RGB"
    train = FileImageDataset(train_base, keep, spec, mode=mode, augment=augment)
    test = FileImageDataset(test_base, torch.arange(len(test_base)), spec, mode=mode, augment=False)
    return train, test, spec


def describe_torchvision_location(name: str, data_dir=None) -> str:
    """Where torchvision set ``name`` was downloaded, or that it is not, in one line (no checksums)."""
    entry = TORCHVISION_SETS[name]
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if (root / entry.probe).exists():
        return f"{root / entry.probe}"
    return f"not in {root}; pass --download to fetch it"
