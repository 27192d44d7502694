"""``DataSpec``: what a model and a training loop need to know about a dataset."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSpec:
    """Shape, size and preprocessing facts of one loaded dataset.

    Attributes:
        name: registry name (lower case), e.g. ``"mnist5k"``.
        num_classes: number of labels; labels are ``0 .. num_classes - 1``.
        in_channels: channels of the images the loaders yield (1 grey, 3 RGB).
        image_size: height and width of the (square) images the loaders yield.
        hflip: whether horizontal flips are a valid augmentation (not for digits).
        mean: per-channel mean used for normalisation, on the 0..1 pixel scale.
        std: per-channel standard deviation used for normalisation, on the 0..1 pixel scale.
        num_train: images in the training split (after ``train_fraction``).
        num_test: images in the test split.
        sample_shape: the shape of one input sample when it is not a (C, H, W) image, e.g. ``(D,)``
            vectors or ``(C, L)`` sequences; None for images.
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    hflip: bool
    mean: tuple
    std: tuple
    num_train: int
    num_test: int
    sample_shape: tuple | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input sample's shape: ``sample_shape``, or ``(in_channels, image_size, image_size)``."""
        if self.sample_shape is not None:
            return tuple(self.sample_shape)
        return (self.in_channels, self.image_size, self.image_size)

    def describe_inputs(self) -> str:
        """``"images of 3x16x16"`` or ``"inputs of shape (64,)"``, for messages."""
        if self.sample_shape is not None:
            return f"inputs of shape {self.input_shape}"
        return f"images of {self.in_channels}x{self.image_size}x{self.image_size}"

    @property
    def crop_padding(self) -> int:
        """Zero padding (pixels) of the random-crop augmentation for this image size.

        4 px is the CIFAR convention for 32 px and larger; smaller images get proportionally less
        so that a crop never shifts a digit or pattern out of the frame.
        """
        return crop_padding_for(self.image_size)


def crop_padding_for(image_size: int) -> int:
    """Random-crop padding for square images of ``image_size`` pixels: 4 (>=32), 2 (>=16), else 1."""
    if image_size >= 32:
        return 4
    if image_size >= 16:
        return 2
    return 1
