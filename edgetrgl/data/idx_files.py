"""Read MNIST-style IDX files (``train-images-idx3-ubyte[.gz]``) straight into uint8 tensors.

The format (LeCun's): two zero bytes, a type code (0x08 = unsigned byte), the number of
dimensions, one big-endian uint32 per dimension, then the raw values in C order. Debian ships
the Fashion-MNIST files gzipped; torchvision keeps both forms in ``<root>/FashionMNIST/raw``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

UBYTE = 0x08


def idx_header(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file declares (its header only; gzip read lazily).

    Raises:
        UserError: not an unsigned-byte IDX file, or unreadable.
    """
    head = _read(path, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != UBYTE or head[3] == 0:
        raise UserError(f"{path} is not an unsigned-byte IDX file (header {head.hex()})")
    raw = _read(path, 4 + 4 * head[3])[4:]
    if len(raw) != 4 * head[3]:
        raise UserError(f"{path} is cut short in its header")
    return tuple(int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(head[3]))


def read_idx(path: Path) -> torch.Tensor:
    """The whole array of an unsigned-byte IDX file (``.gz`` or plain) as a uint8 tensor.

    Raises:
        UserError: a bad header, a size that does not match it, or an unreadable file.
    """
    dims = idx_header(path)
    offset = 4 + 4 * len(dims)
    data = _read(path)
    expected = offset + int(np.prod(dims))
    if len(data) != expected:
        raise UserError(f"{path} holds {len(data)} bytes, its header promises {expected}")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy())


def _read(path: Path, size: int = -1) -> bytes:
    """The first ``size`` bytes (all with -1), decompressed; read errors become a UserError."""
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as fh:
            return fh.read(size)
    except (OSError, EOFError) as err:  # gzip: BadGzipFile is an OSError, a cut-short stream an EOFError
        raise UserError(f"could not read {path}: {err}") from err
