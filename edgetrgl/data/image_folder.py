"""``imagefolder``: your own images, laid out as ``train/<class>/*.png`` and ``test/<class>/*``."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ._subsets import stratified_subset
from .file_dataset import FileImageDataset, open_image
from .image_check import describe_unreadable, unreadable_images
from .spec import DataSpec
from ..errors import DataWarning, UserError

DEFAULT_SIZE = 32
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
# ImageNet statistics: the usual default for natural photos of unknown origin.
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GREY_MEAN, GREY_STD = (0.5,), (0.5,)
MODE_PROBES = 256  # images whose headers decide grey vs RGB; headers only, so this is cheap


def _folder(path: Path):
    """A torchvision ``ImageFolder`` over ``path`` that returns PIL images in their own colour mode."""
    from torchvision import datasets  # lazy: see torchvision_sets._build

    try:
        return datasets.ImageFolder(str(path), loader=open_image)
    except OSError as err:
        # FileNotFoundError's message names what is missing: no class folder, or no image in one.
        raise UserError(f"no usable images in {path}: {err}") from err


def _colour_mode(samples: list[tuple[str, int]]) -> str:
    """``"L"`` if every probed image is greyscale, else ``"RGB"``.

    Raises:
        UserError: an image that PIL cannot read.
    """
    from PIL import Image, UnidentifiedImageError

    step = max(1, len(samples) // MODE_PROBES)
    for path, _ in samples[::step]:
        try:
            with Image.open(path) as image:  # reads the header only
                if image.mode not in GREY_MODES:
                    return "RGB"
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"cannot read image {path}: {err}") from err
    return "L"


def _leave_out_unreadable(root: Path, folders: list, skip: bool) -> None:
    """Decode every image of ``folders`` once (cached); stop at an unreadable one, or with ``skip``
    drop them from the folders' samples with one warning.

    Raises:
        UserError: an unreadable image and not ``skip``; a training class left with no image.
    """
    bad = unreadable_images([path for folder in folders for path, _ in folder.samples], root)
    if not bad:
        return
    if not skip:
        them = "them" if len(bad) > 1 else "it"
        raise UserError(f"unreadable image {describe_unreadable(bad)} in {root}: replace or remove {them}, or "
                        f"pass --skip-bad-images to leave {them} out")
    for folder in folders:
        folder.samples = [(p, t) for p, t in folder.samples if p not in bad]
        folder.targets = [t for _, t in folder.samples]
        folder.imgs = folder.samples
    empty = [c for i, c in enumerate(folders[0].classes) if i not in set(folders[0].targets)]
    if empty:
        raise UserError(f"class folder {empty[0]!r} of {root / 'train'} has no readable image left "
                        f"(unreadable: {describe_unreadable(bad)})")
    if not folders[1].samples:
        raise UserError(f"the test folder of {root} has no readable image left (unreadable: {describe_unreadable(bad)})")
    warnings.warn(f"skipped {len(bad)} unreadable image{'s' if len(bad) > 1 else ''} in {root} "
                  f"(--skip-bad-images): {describe_unreadable(bad)}", DataWarning, stacklevel=2)


def load_image_folder(
    *, data_dir, augment: bool, train_fraction: float, seed: int, image_size: int | None,
    skip_bad_images: bool = False,
) -> tuple[FileImageDataset, FileImageDataset, DataSpec]:
    """Load ``data_dir/train`` and ``data_dir/test`` (or ``data_dir/val``), one sub-folder per class.

    Class indices follow the sorted names of the training class folders; the test folder may
    hold a subset of them. Images are resized (shorter side, then centre crop) to ``image_size``
    (default 32); they are greyscale (1 channel) if all probed images are, else RGB (3 channels).

    Args:
        data_dir: the root folder.
        augment: default augmentation of the training split (random crop and horizontal flip).
        train_fraction: stratified fraction of the training images to keep.
        seed: picks the ``train_fraction`` subset.
        image_size: output height and width.
        skip_bad_images: leave out the images PIL cannot decode (with a :class:`DataWarning`)
            instead of refusing the folder. Every image is decoded once, before training; the
            verdicts are cached (see :mod:`edgetrgl.data.image_check`).

    Returns:
        ``(train, test, spec)``.

    Raises:
        UserError: no ``data_dir``, a missing folder, no images, an unreadable image (without
            ``skip_bad_images``), or a test class that the training folder lacks.
    """
    if data_dir is None:
        raise UserError("imagefolder needs --data-dir: a folder with train/ and test/ (or val/) "
                        "sub-folders, one folder per class inside each")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")
    train_dir = root / "train"
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise UserError(f"{root} must contain train/ and test/ (or val/) folders of class folders")

    train_base, test_base = _folder(train_dir), _folder(test_dir)
    unknown = sorted(set(test_base.classes) - set(train_base.classes))
    if unknown:
        raise UserError(f"{test_dir} has class folder {unknown[0]!r} that {train_dir} lacks")
    # Re-number the test labels by the training classes (the test folder may lack some classes).
    to_train = {i: train_base.class_to_idx[c] for i, c in enumerate(test_base.classes)}
    test_base.samples = [(p, to_train[t]) for p, t in test_base.samples]
    test_base.targets = [t for _, t in test_base.samples]
    test_base.imgs = test_base.samples
    _leave_out_unreadable(root, [train_base, test_base], skip_bad_images)

    mode = _colour_mode(train_base.samples)
    size = image_size or DEFAULT_SIZE
    keep = stratified_subset(torch.as_tensor(train_base.targets), train_fraction, seed)
    grey = mode == "L"
    spec = DataSpec(name="imagefolder", num_classes=len(train_base.classes),
                    in_channels=1 if grey else 3, image_size=size, hflip=True,
                    mean=GREY_MEAN if grey else RGB_MEAN, std=GREY_STD if grey else RGB_STD,
                    num_train=keep.numel(), num_test=len(test_base))
    train = FileImageDataset(train_base, keep, spec, mode=mode, augment=augment)
    test = FileImageDataset(test_base, torch.arange(len(test_base)), spec, mode=mode, augment=False)
    return train, test, spec
