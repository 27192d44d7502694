"""Write a few digits of the bundled MNIST sample as PNG files, for `edgetrgl predict` in the guest.

    python3 digits.py mnist5k.npz OUT_DIR COUNT

Standard library only (the host needs no numpy or Pillow): reads the ``.npy`` members of the
``.npz`` archive and writes 8-bit grayscale PNGs named ``digit-INDEX-labelL.png`` (COUNT images
spread evenly over the file, so the label each should get is in its name).
"""

from __future__ import annotations

import ast
import os
import struct
import sys
import zipfile
import zlib


def read_npy(data: bytes) -> tuple[tuple[int, ...], str, bytes]:
    """Shape, dtype string and raw bytes of a version 1/2 ``.npy`` file (C order only)."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy file")
    major = data[6]
    if major == 1:
        (hlen,), start = struct.unpack("<H", data[8:10]), 10
    else:
        (hlen,), start = struct.unpack("<I", data[8:12]), 12
    header = ast.literal_eval(data[start:start + hlen].decode("latin1"))
    if header.get("fortran_order"):
        raise ValueError("Fortran-ordered arrays are not supported")
    return tuple(header["shape"]), header["descr"], data[start + hlen:]


def png_gray(width: int, height: int, pixels: bytes) -> bytes:
    """An 8-bit grayscale PNG of ``pixels`` (row-major, one byte each)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or not argv[2].isdigit():
        print("usage: digits.py mnist5k.npz OUT_DIR COUNT", file=sys.stderr)
        return 2
    npz, out, count = argv[0], argv[1], int(argv[2])
    with zipfile.ZipFile(npz) as z:
        shape, descr, images = read_npy(z.read("images.npy"))
        _, ldescr, labels = read_npy(z.read("labels.npy"))
    if descr != "|u1" or ldescr != "|u1" or len(shape) != 3:
        raise ValueError(f"expected uint8 images (N, H, W) and labels, got {descr} {shape}, {ldescr}")
    n, h, w = shape
    os.makedirs(out, exist_ok=True)
    for i in sorted({k * n // count for k in range(count)}):
        with open(os.path.join(out, f"digit-{i}-label{labels[i]}.png"), "wb") as f:
            f.write(png_gray(w, h, images[i * h * w:(i + 1) * h * w]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
