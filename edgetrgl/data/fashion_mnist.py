"""Fashion-MNIST from its four IDX files, wherever they are: Debian's package first, no copy.

Xiao, Rasul, Vollgraf 2017: 60,000 training and 10,000 test images of clothing, 1x28x28, 10
classes. Debian's ``dataset-fashion-mnist`` installs the original gzipped files under
``/usr/share/datasets/fashion-mnist/``; torchvision's download puts the same files in
``<root>/FashionMNIST/raw``. Both are read directly into memory (47 MB of uint8 for the
training split), so the loaders batch from one tensor instead of decoding PIL images.

Where it looks, first match wins:
  * ``--data-dir DIR`` given: DIR only (the files in DIR, ``DIR/FashionMNIST/raw`` or
    ``DIR/fashion-mnist``); nothing else, since the user named the place;
  * otherwise ``$EDGETRGL_DATA`` (the same three layouts) when it is set, then Debian's folder,
    then ``~/.cache/edgetrgl/data`` (where ``--download`` puts it when ``$EDGETRGL_DATA`` is unset);
  * ``--download``: torchvision fetches it into the data folder, then it is read from there.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ._subsets import stratified_subset
from .augment import resize_images
from .idx_files import idx_header, read_idx
from .spec import DataSpec
from .tensor_dataset import TensorImageDataset
from .torchvision_sets import TORCHVISION_SETS, build_torchvision, default_data_dir
from ..errors import UserError

NAME = "fashionmnist"
# Debian's package `dataset-fashion-mnist`; a tuple so that tests can point it elsewhere.
SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)
LAYOUTS = ("", "FashionMNIST/raw", "fashion-mnist")  # under a data root: flat, torchvision's, Debian's name
FILES = {  # split -> (images, labels), the names the dataset's authors gave them
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MISSING_HINT = "install it with `apt install dataset-fashion-mnist`, or pass --download (or --data-dir DIR)"


def _file(folder: Path, name: str) -> Path | None:
    """``folder/name``, or ``folder/name.gz`` (the plain one is faster to read), or None."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> bool:
    return all(_file(folder, n) for pair in FILES.values() for n in pair)


def _roots(data_dir) -> list[tuple[Path, str, tuple[str, ...]]]:
    """``(folder, how it was chosen, layouts under it)`` in search order."""
    if data_dir is not None:
        return [(Path(data_dir).expanduser(), "--data-dir", LAYOUTS)]
    env = os.environ.get("EDGETRGL_DATA")
    roots = [(Path(env).expanduser(), "$EDGETRGL_DATA", LAYOUTS)] if env else []
    roots += [(folder, "Debian's dataset-fashion-mnist", ("",)) for folder in SYSTEM_DIRS]
    if not env:
        roots.append((default_data_dir(), "the default data folder", LAYOUTS))
    return roots


def search_path(data_dir=None) -> list[tuple[Path, str]]:
    """The folders looked at, in order, each with how it was chosen (for messages and `datasets`)."""
    return [(root / sub, how) for root, how, layouts in _roots(data_dir) for sub in layouts]


def locate(data_dir=None) -> tuple[Path, str] | None:
    """The first folder of ``search_path(data_dir)`` that holds all four files, with how it was chosen."""
    for folder, how in search_path(data_dir):
        if _complete(folder):
            return folder, how
    return None


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images uint8 (N, 1, 28, 28), labels int64 (N,))`` of one split, checked against the headers.

    Raises:
        UserError: a file that is not what its header says, or images and labels that disagree.
    """
    images_path, labels_path = (_file(folder, n) for n in FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise UserError(f"{images_path} {tuple(images.shape)} and {labels_path} {tuple(labels.shape)} "
                        "are not one split of Fashion-MNIST")
    if int(labels.max()) >= TORCHVISION_SETS[NAME].num_classes:
        raise UserError(f"{labels_path} has label {int(labels.max())}; Fashion-MNIST has 10 classes")
    return images.unsqueeze(1), labels.to(torch.int64)


def describe_location(data_dir=None) -> str:
    """Where Fashion-MNIST would be read from, or why it cannot be, in one line."""
    hit = locate(data_dir)
    if hit is None:
        return f"not found; {MISSING_HINT}"
    folder, how = hit
    n_train = idx_header(_file(folder, FILES["train"][1]))[0]
    return f"{folder} ({how}, {n_train:,} training images)"


def load_fashion_mnist(
    *, data_dir, download: bool, augment: bool, train_fraction: float, seed: int, image_size: int | None,
) -> tuple[TensorImageDataset, TensorImageDataset, DataSpec]:
    """Load Fashion-MNIST from the first folder that has it (see the module docstring).

    Args:
        data_dir: look only here (None: ``$EDGETRGL_DATA``, Debian's folder, the default folder).
        download: fetch it with torchvision into ``data_dir`` (or the default folder) if it is nowhere.
        augment: default augmentation of the training split (random crop and flip: clothes may be
            mirrored, unlike digits).
        train_fraction: stratified, seeded fraction of the 60,000 training images to keep.
        seed: picks the ``train_fraction`` subset.
        image_size: resize to this size (default 28).

    Returns:
        ``(train, test, spec)`` as in-memory ``TensorImageDataset``s.

    Raises:
        UserError: not found and ``download`` False (one line: how to get it), a failed download,
            or files that do not parse.
    """
    hit = locate(data_dir)
    if hit is None:
        if not download:
            looked = ", ".join(str(root) for root, _, _ in _roots(data_dir))
            raise UserError(f"{NAME} is not in {looked}; {MISSING_HINT}")
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            build_torchvision(NAME, TORCHVISION_SETS[NAME], root, train, download=True)
        hit = locate(root)
        if hit is None:
            raise UserError(f"the download of {NAME} into {root} left no IDX files in {root / LAYOUTS[1]}")
    folder = hit[0]
    entry = TORCHVISION_SETS[NAME]
    (train_x, train_y), (test_x, test_y) = read_split(folder, "train"), read_split(folder, "test")
    if image_size is not None and image_size != train_x.shape[-1]:
        train_x, test_x = resize_images(train_x, image_size), resize_images(test_x, image_size)
    keep = stratified_subset(train_y, train_fraction, seed)
    spec = DataSpec(name=NAME, num_classes=entry.num_classes, in_channels=1, image_size=train_x.shape[-1],
                    hflip=entry.hflip, mean=entry.mean, std=entry.std, num_train=keep.numel(),
                    num_test=len(test_y))
    train = TensorImageDataset(train_x[keep], train_y[keep], spec, augment=augment)
    test = TensorImageDataset(test_x, test_y, spec, augment=False)
    return train, test, spec
