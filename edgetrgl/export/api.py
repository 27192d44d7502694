"""``export_run``: write a finished run's early-exit network in a deployable format, then check it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgetrgl._version import __version__
from edgetrgl.config import TrainConfig
from edgetrgl.data import FileImageDataset, load_dataset
from edgetrgl.errors import UserError
from edgetrgl.export.check import CheckResult, check_export, raw_batches, to_unit_scale
from edgetrgl.export.early_exit import METADATA_FORMAT, build_early_exit, parameter_count, resolve_exit
from edgetrgl.export.formats import get_format


class ExportFailed(UserError):
    """The exporter could not convert this network to the chosen format (try another format)."""


@dataclass
class ExportResult:
    """What :func:`export_run` wrote and how its check went.

    Attributes:
        path: the exported file.
        format: ``torchscript``, ``onnx`` or ``pt2``.
        exit_module: the chosen module, 1-based.
        num_modules: K, the run's module count.
        size_bytes: the file's size.
        parameters: parameters of the exported network (stages 1..k and head k).
        full_parameters: parameters of the whole run (every stage and head), for comparison.
        test_accuracy: module k's test accuracy recorded by the run.
        check: the comparison on the test set; None when the format's runtime is not installed.
        runtime: what loaded the file back for the check.
        metadata: the metadata stored in the file.
        chosen_by: for ``exit="best"``, what the module was chosen on: ``validation``, or ``test``
            for a run without a validation split (an optimistic pick); None for any other exit.
    """

    path: Path
    format: str
    exit_module: int
    num_modules: int
    size_bytes: int
    parameters: int
    full_parameters: int
    test_accuracy: float | None
    check: CheckResult | None
    runtime: str
    metadata: dict[str, Any]
    chosen_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "exit_module": self.exit_module,
                "num_modules": self.num_modules, "size_bytes": self.size_bytes, "parameters": self.parameters,
                "full_parameters": self.full_parameters, "test_accuracy": self.test_accuracy,
                "check": self.check.to_dict() if self.check else None, "runtime": self.runtime,
                "chosen_by": self.chosen_by}


def export_run(run_dir: str | Path, exit: str | int = "best", format: str = "torchscript", out: str | Path | None = None,
               *, overwrite: bool = False, data_dir: str | None = None) -> ExportResult:
    """Export a finished run truncated at one module, with that module's head, and check it.

    The exported model takes float images (N, C, H, W) on the 0..1 scale at the run's size and
    channels; it normalises them itself with the dataset's mean and std (stored in its metadata).
    The check loads the file back with the format's runtime and compares its logits with the run's
    own forward on the whole test set.

    Args:
        run_dir: a finished run folder (with ``summary.json`` and ``model.pt``).
        exit: ``"best"`` (highest validation accuracy; highest test accuracy for a run trained
            without a validation split, see ``ExportResult.chosen_by``), ``"last"`` or a module number 1..K.
        format: ``"torchscript"``, ``"onnx"`` (needs the ``onnx`` extra) or ``"pt2"``.
        out: the file to write (default ``RUN_DIR/exit<k>.<ts|onnx|pt2>``).
        overwrite: replace ``out`` if it exists.
        data_dir: where the run's dataset lives, if not where the run found it.

    Returns:
        An :class:`ExportResult`; ``result.check.passed`` says whether predictions agree on 100%.

    Raises:
        UserError: not a finished run, no weights, a bad ``exit`` or ``format``, ``out`` exists,
            the onnx extra missing, the dataset unavailable, or the exporter failing on this network.
    """
    from edgetrgl.training.results import load_run, pick_best

    fmt = get_format(format)
    run = load_run(run_dir)
    k = resolve_exit(exit, run.modules)
    cfg: TrainConfig = run.config
    spec = run.spec
    path = Path(out) if out is not None else Path(run_dir) / f"exit{k + 1}{fmt.suffix}"
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UserError(f"--out {path} already exists: pass --overwrite to replace it")
    train_set, test_set, _ = load_dataset(cfg.dataset, data_dir=data_dir or cfg.data_dir, download=False, augment=False,
                                          train_fraction=cfg.train_fraction, seed=cfg.seed,
                                          skip_bad_images=cfg.skip_bad_images, **cfg.dataset_options)
    meta = run_metadata(run, k, _class_names(train_set))
    model = build_early_exit(run.net, k, spec.mean, spec.std)
    example = to_unit_scale(next(raw_batches(test_set, 2))[0])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write --out {path}: {exc.strerror}") from None
    _write_atomically(fmt, model, example, path, meta)
    runner, _ = fmt.load(path)
    check = check_export(runner, run.net, k, test_set, spec.mean, spec.std) if runner is not None else None
    return ExportResult(path, fmt.name, k + 1, run.net.num_modules, path.stat().st_size, parameter_count(model),
                        parameter_count(run.net), run.modules[k]["test_accuracy"], check,
                        fmt.runtime if runner is not None else "", meta,
                        chosen_by=pick_best(run.modules)[1] if exit == "best" else None)


def run_metadata(run, k: int, class_names: list[str] | None = None) -> dict[str, Any]:
    """What a deployment needs to feed module k's early exit: input shape, scale, classes."""
    spec = run.spec
    return {
        "format": METADATA_FORMAT, "model": run.config.model, "dataset": spec.name,
        "exit_module": k + 1, "num_modules": run.net.num_modules, "num_classes": spec.num_classes,
        "class_names": class_names,
        "input": {"layout": "NCHW", "dtype": "float32", "scale": "0..1", "channels": spec.in_channels,
                  "image_size": spec.image_size, "mean": list(spec.mean), "std": list(spec.std),
                  "normalised_inside": True},
        "test_accuracy": run.modules[k]["test_accuracy"],
        "val_accuracy": run.modules[k].get("val_accuracy"),
        "versions": {"edgetrgl": __version__, "torch": torch.__version__},
    }


def _class_names(train_set) -> list[str] | None:
    """Class names where the dataset has them (torchvision sets, ImageFolder); None otherwise."""
    names = getattr(train_set.base, "classes", None) if isinstance(train_set, FileImageDataset) else None
    return [str(n) for n in names] if names else None


def _write_atomically(fmt, model, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    """Write next to ``path`` and rename: an interrupted export never leaves half a file at ``path``."""
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        fmt.write(model, example, partial, meta)
        os.replace(partial, path)
    except UserError:
        raise
    except OSError as exc:
        raise UserError(f"cannot write --out {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # the exporters raise many types for a network they cannot convert
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportFailed(f"exporting {model.__class__.__name__} as {fmt.name} failed ({first}); try another --format") from None
    finally:
        partial.unlink(missing_ok=True)
