"""``synthetic``: a small, deterministic, learnable image set for tests and benchmarks.

Each class is a smooth random pattern (coarse noise, upsampled); a sample is its class pattern
with random contrast, a small random shift and pixel noise. A tiny conv net gets well above chance
in a few epochs, yet not instantly perfect, which makes it a meaningful smoke test.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ._seeding import derive_seed
from ._subsets import stratified_subset
from .spec import DataSpec
from .tensor_dataset import TensorImageDataset
from ..errors import UserError

DEFAULTS = {
    "num_classes": 10,
    "in_channels": 3,
    "image_size": 16,
    "num_train": 1024,
    "num_test": 256,
    "noise": 0.35,
}


def _check_options(options: dict) -> dict:
    """Merge ``options`` into the defaults; every value must be a positive number of the right kind.

    Raises:
        UserError: an unknown option or an invalid value.
    """
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"synthetic dataset has no option {unknown[0]!r}; "
                        f"known: {', '.join(sorted(DEFAULTS))}")
    merged = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"synthetic option {key} must be a number, got {value!r}")
        if key == "noise":
            if not value >= 0:
                raise UserError(f"synthetic option noise must be >= 0, got {value}")
            merged[key] = float(value)
        else:
            if value != int(value) or value < 1:
                raise UserError(f"synthetic option {key} must be a positive integer, got {value}")
            merged[key] = int(value)
    if merged["num_classes"] < 2:
        raise UserError("synthetic option num_classes must be at least 2")
    if merged["image_size"] < 4:
        raise UserError("synthetic option image_size must be at least 4")
    return merged


def _prototypes(num_classes: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """Class patterns in [0, 1], shape (K, C, size, size): 4x4 noise upsampled, so they are smooth."""
    g = torch.Generator().manual_seed(derive_seed(seed, 1))
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _samples(prototypes: torch.Tensor, n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` class-balanced samples as (uint8 (n, C, H, W), int64 (n,))."""
    g = torch.Generator().manual_seed(seed)
    K, _, H, W = prototypes.shape
    labels = (torch.arange(n) % K)[torch.randperm(n, generator=g)]
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=g)
    x = 0.5 + contrast * (prototypes[labels] - 0.5)
    # A shift of up to 1/8 of the image: the model must learn the pattern, not single pixels.
    max_shift = max(1, H // 8)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    x = torch.stack([torch.roll(img, tuple(s.tolist()), dims=(1, 2)) for img, s in zip(x, shifts)])
    x = x + noise * torch.randn(x.shape, generator=g)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


def load_synthetic(
    *, augment: bool, train_fraction: float, seed: int, image_size: int | None, **options
) -> tuple[TensorImageDataset, TensorImageDataset, DataSpec]:
    """Generate the synthetic train and test splits; same arguments, same tensors.

    Args:
        augment: default augmentation of the training split (random crop; no flip).
        train_fraction: stratified fraction of the training split to keep.
        seed: determines the class patterns and every sample.
        image_size: image height and width (default 16).
        **options: ``num_classes`` (10), ``in_channels`` (3), ``num_train`` (1024),
            ``num_test`` (256), ``noise`` (0.35, std of the pixel noise on the 0..1 scale).

    Returns:
        ``(train, test, spec)``; mean and std are measured on the training images.

    Raises:
        UserError: unknown option or invalid value.
    """
    opts = _check_options({**options, "image_size": image_size})
    protos = _prototypes(opts["num_classes"], opts["in_channels"], opts["image_size"], seed)
    train_x, train_y = _samples(protos, opts["num_train"], opts["noise"], derive_seed(seed, 2))
    test_x, test_y = _samples(protos, opts["num_test"], opts["noise"], derive_seed(seed, 3))
    keep = stratified_subset(train_y, train_fraction, seed)
    train_x, train_y = train_x[keep], train_y[keep]
    pixels = train_x.float().div(255).transpose(0, 1).reshape(opts["in_channels"], -1)
    spec = DataSpec(
        name="synthetic", num_classes=opts["num_classes"], in_channels=opts["in_channels"],
        image_size=opts["image_size"], hflip=False,
        mean=tuple(round(v, 4) for v in pixels.mean(1).tolist()),
        std=tuple(round(max(v, 1e-3), 4) for v in pixels.std(1).tolist()),
        num_train=len(train_y), num_test=len(test_y),
    )
    train = TensorImageDataset(train_x, train_y, spec, augment=augment)
    test = TensorImageDataset(test_x, test_y, spec, augment=False)
    return train, test, spec
