"""Small Fashion-MNIST-shaped IDX files for tests (the format of Debian's and torchvision's copies)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """``array`` (uint8) in the IDX format at ``path`` (``path.gz``, gzipped, when ``gz``)."""
    data = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def fake_fashion_mnist(folder: Path, n_train: int = 40, n_test: int = 20, fill: int | None = 0,
                       gz: bool = True) -> Path:
    """The four files of ``n_train`` / ``n_test`` 28x28 images, labels cycling 0..9.

    ``fill``: every pixel this value; None: a learnable pattern (class c lights row band c) plus noise.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        if fill is None:
            images = rng.integers(0, 60, (n, 28, 28))
            for i, c in enumerate(labels):
                images[i, 2 + 2 * c: 4 + 2 * c, :] = 250
        else:
            images = np.full((n, 28, 28), fill)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return folder
