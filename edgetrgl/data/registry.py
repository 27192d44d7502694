"""Datasets by name: ``load_dataset``, ``list_datasets``, ``dataset_info``, ``dataset_location``."""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

from ._subsets import check_fraction
from .bundled import load_mnist5k
from .fashion_mnist import describe_location as fashion_mnist_location
from .fashion_mnist import load_fashion_mnist
from .file_dataset import FileImageDataset
from .image_folder import load_image_folder
from .spec import DataSpec
from .synthetic import load_synthetic
from .tensor_dataset import TensorImageDataset
from .torchvision_sets import describe_torchvision_location, load_torchvision
from ..errors import UserError

DEFAULT_DATASET = "mnist5k"


class _Entry(NamedTuple):
    loader: Callable
    description: str
    uses_data_dir: bool  # whether data_dir / download mean anything for this dataset
    where: Callable  # where(data_dir) -> one line: where the data would be read from, or why not


_REGISTRY: dict[str, _Entry] = {
    "mnist5k": _Entry(load_mnist5k, "5,000 MNIST digits bundled with the package (4,000 train / "
                      "1,000 test, 1x28x28, 10 classes); works offline", False,
                      lambda data_dir: "bundled in the package"),
    "synthetic": _Entry(load_synthetic, "generated class patterns plus noise (default 1,024 train / "
                        "256 test, 3x16x16, 10 classes); fast, for tests and benchmarks", False,
                        lambda data_dir: "generated on the fly"),
    "mnist": _Entry(partial(load_torchvision, "mnist"),
                    "MNIST digits (60,000 / 10,000, 1x28x28, 10 classes); needs --download once", True,
                    partial(describe_torchvision_location, "mnist")),
    "fashionmnist": _Entry(load_fashion_mnist, "Fashion-MNIST clothing (60,000 / 10,000, 1x28x28, "
                           "10 classes); offline from Debian's dataset-fashion-mnist, or --download once",
                           True, fashion_mnist_location),
    "cifar10": _Entry(partial(load_torchvision, "cifar10"),
                      "CIFAR-10 (50,000 / 10,000, 3x32x32, 10 classes); needs --download once", True,
                      partial(describe_torchvision_location, "cifar10")),
    "cifar100": _Entry(partial(load_torchvision, "cifar100"),
                       "CIFAR-100 (50,000 / 10,000, 3x32x32, 100 classes); needs --download once", True,
                       partial(describe_torchvision_location, "cifar100")),
    "svhn": _Entry(partial(load_torchvision, "svhn"), "SVHN house numbers "
                   "(73,257 / 26,032, 3x32x32, 10 classes); needs --download once", True,
                   partial(describe_torchvision_location, "svhn")),
    "stl10": _Entry(partial(load_torchvision, "stl10"), "STL-10 labelled split "
                    "(5,000 / 8,000, 3x96x96, 10 classes); needs --download once (2.6 GB)", True,
                    partial(describe_torchvision_location, "stl10")),
    "imagefolder": _Entry(load_image_folder, "your images: --data-dir with train/ and test/ (or "
                          "val/) folders of class folders; resized to 32 px by default", True,
                          lambda data_dir: str(data_dir) if data_dir else "your --data-dir"),
}


def list_datasets() -> list[str]:
    """Names accepted by ``load_dataset``, the bundled default first."""
    return list(_REGISTRY)


def _entry(name: str) -> tuple[str, _Entry]:
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return key, _REGISTRY[key]


def dataset_info(name: str) -> str:
    """One-line description of dataset ``name``.

    Raises:
        UserError: unknown name.
    """
    return _entry(name)[1].description


def dataset_location(name: str, data_dir=None) -> str:
    """Where dataset ``name`` would be read from (with ``data_dir``, or the defaults), in one line.

    Raises:
        UserError: unknown name.
    """
    return _entry(name)[1].where(data_dir)


def load_dataset(
    name: str = DEFAULT_DATASET,
    *,
    data_dir=None,
    download: bool = False,
    augment: bool = True,
    train_fraction: float = 1.0,
    seed: int = 0,
    image_size: int | None = None,
    skip_bad_images: bool = False,
    **options,
) -> tuple[TensorImageDataset | FileImageDataset, TensorImageDataset | FileImageDataset, DataSpec]:
    """Load a dataset by name (case-insensitive) as ``(train, test, spec)``.

    Args:
        name: one of ``list_datasets()``; default ``"mnist5k"``, bundled and offline.
        data_dir: root folder for torchvision datasets (default ``$EDGETRGL_DATA`` or
            ``~/.cache/edgetrgl/data``; for ``fashionmnist`` also Debian's
            ``/usr/share/datasets/fashion-mnist``), or the ImageFolder root.
        download: let torchvision fetch missing files.
        augment: whether ``make_loader`` augments the training split by default (the test
            split never is); an explicit ``make_loader(augment=...)`` overrides it.
        train_fraction: in (0, 1]: keep this stratified, seeded fraction of the training split
            (at least one image per class), for small-data experiments.
        seed: picks the ``train_fraction`` subset; for ``synthetic`` it also generates the data.
        image_size: resize images to this size (default: the dataset's own; 32 for imagefolder,
            16 for synthetic).
        skip_bad_images: ``imagefolder``: leave out the images that cannot be decoded (each
            file is decoded once, before anything trains) instead of refusing the folder.
        **options: dataset-specific settings; only ``synthetic`` takes any (``num_train``,
            ``num_test``, ``num_classes``, ``in_channels``, ``noise``).

    Returns:
        ``(train, test, spec)``: ``TensorImageDataset`` for in-memory sets (``mnist5k``,
        ``synthetic``, ``fashionmnist``), ``FileImageDataset`` for the others; both work with ``make_loader`` and
        with ``torch.utils.data.DataLoader``.

    Raises:
        UserError: unknown name or option, bad ``train_fraction`` or ``image_size``, missing or
            unreadable data, data not downloaded and ``download`` False.
    """
    key, entry = _entry(name)
    fraction = check_fraction(train_fraction)
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise UserError(f"image size must be a positive integer, got {image_size!r}")
    if options and key != "synthetic":
        raise UserError(f"dataset {key} takes no option {sorted(options)[0]!r}")
    common = dict(augment=augment, train_fraction=fraction, seed=seed, image_size=image_size)
    if key == "imagefolder":
        return entry.loader(data_dir=data_dir, skip_bad_images=skip_bad_images, **common)
    if entry.uses_data_dir:
        return entry.loader(data_dir=data_dir, download=download, **common)
    return entry.loader(**common, **options)
