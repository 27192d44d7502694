"""``predict``: classify image files with an exported model or straight from a run folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from edgetrgl.errors import UserError
from edgetrgl.export.early_exit import build_early_exit, resolve_exit
from edgetrgl.export.formats import Runner, load_exported

# a camera's largest photos are ~50 MP; PIL warns (on stderr) from 89 MP and refuses from 179 MP
MAX_PIXELS = 50_000_000


@dataclass
class Prediction:
    """One image's predicted class and its softmax probability."""

    path: str
    label: int
    name: str | None
    probability: float

    def line(self) -> str:
        label = f"{self.label} ({self.name})" if self.name is not None else str(self.label)
        return f"{self.path}\t{label}\t{self.probability:.4f}"


def load_classifier(model_or_run: str | Path, exit: str | int | None = None) -> tuple[Runner, dict[str, Any]]:
    """An image classifier and its metadata, from an exported file or a finished run folder.

    Args:
        model_or_run: a file written by ``edgetrgl export`` (TorchScript, pt2, ONNX), or a run folder.
        exit: for a run folder: ``best`` (default), ``last`` or a module number.

    Raises:
        UserError: not a model or run, ``exit`` with a file, ONNX without onnxruntime.
    """
    path = Path(model_or_run)
    if path.is_dir():
        from edgetrgl.export.api import run_metadata
        from edgetrgl.training.results import load_run

        run = load_run(path)
        k = resolve_exit(exit or "best", run.modules)
        model = build_early_exit(run.net, k, run.spec.mean, run.spec.std)

        def runner(images: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(images)

        return runner, run_metadata(run, k)
    if exit is not None:
        raise UserError(f"--exit applies to a run folder; {path} is already exported at one module")
    runner, meta, _ = load_exported(path)
    if runner is None:
        raise UserError(f"running the ONNX model {path} needs onnxruntime: pip install 'edgetrgl[onnx]'")
    return runner, meta


def load_images(paths: list[str | Path], channels: int, image_size: int) -> torch.Tensor:
    """Decode image files as the model's input: float (N, C, S, S) on 0..1, greyscale for 1 channel.

    Images are converted to the model's channels and resized like the training data (shorter side to
    ``image_size``, centre crop).

    Raises:
        UserError: a missing file, one that is not an image, or one over MAX_PIXELS.
    """
    from edgetrgl.data.file_dataset import fit_image

    mode = "L" if channels == 1 else "RGB"
    images = []
    for path in paths:
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:  # before decoding: a header may claim any size
                    raise UserError(f"{path} is {image.width}x{image.height} pixels: larger than the "
                                    f"{MAX_PIXELS // 10**6} megapixels predict reads (resize it first)")
                image.load()
                images.append(fit_image(image, mode, image_size))
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UserError(f"{path} is a folder, not an image") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise UserError(f"{path} is not an image (PNG, JPEG or another format PIL reads)") from None
    return torch.stack(images).float().div_(255.0)


def predict(model_or_run: str | Path, images: list[str | Path], exit: str | int | None = None,
            batch_size: int = 64) -> list[Prediction]:
    """Classify image files.

    Args:
        model_or_run: an exported model file or a run folder (see :func:`load_classifier`).
        images: image files (PNG, JPEG, ...); all are read before any is classified.
        exit: for a run folder: which module's head (default ``best``).

    Returns:
        One :class:`Prediction` per image, in order.

    Raises:
        UserError: a bad model, a missing file or one that is not an image.
    """
    runner, meta = load_classifier(model_or_run, exit)
    spec = meta["input"]
    pixels = load_images(images, spec["channels"], spec["image_size"])
    names = meta.get("class_names")
    results = []
    for start in range(0, len(images), batch_size):
        probs = torch.softmax(runner(pixels[start:start + batch_size]).float(), dim=1)
        best, label = probs.max(dim=1)
        for i, (p, c) in enumerate(zip(best.tolist(), label.tolist())):
            results.append(Prediction(str(images[start + i]), c, names[c] if names else None, p))
    return results
