"""The run folder: what a finished (or interrupted) run leaves on disk, and how to read it back.

    <out>/config.json     the resolved configuration (and the dataset's shape facts, the validation split)
    <out>/metrics.jsonl   one record per module and epoch
    <out>/tb/             TensorBoard event files (with --log tensorboard; each sink's own: edgetrgl/metrics/sinks.py)
    <out>/summary.json    config, per-module test accuracy (and validation), best module, wall time, peaks
    <out>/model.pt        the trained modules and heads
    <out>/checkpoint.pt   the last complete checkpoint (see checkpoint.py)
    <out>/.lock           held by the process writing the run (see run_lock.py)

Every file is written atomically (temporary file, fsync, rename, fsync of the folder), so a reader never
sees half of one and a power cut leaves the old one or the new one; ``metrics.jsonl`` is appended to
and fsync'd at each checkpoint, so every record a checkpoint counts is on the disk with it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from edgetrgl.errors import UserError
from edgetrgl._durable import fsync_dir, make_dirs, write_atomically
from edgetrgl.metrics.sinks import owned_paths

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "model.pt", "checkpoint.pt")


def prepare_run_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out`` for a new run; refuse to clobber an earlier run unless ``overwrite``.

    Raises:
        UserError: ``out`` holds a run and ``overwrite`` is False, or it cannot be written.
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} exists and is not a folder")
    if path.is_dir() and any((path / name).exists() for name in RUN_FILES):
        if not overwrite:
            raise UserError(f"--out {path} already holds a run: pass --resume {path} to continue it, --overwrite "
                            f"to replace it, or choose another folder")
        for name in RUN_FILES:
            (path / name).unlink(missing_ok=True)
        shutil.rmtree(path / "cache", ignore_errors=True)
        for name in owned_paths():  # what every registered sink writes (TensorBoard's tb/, ...)
            if (path / name).is_dir():
                shutil.rmtree(path / name, ignore_errors=True)
            else:
                (path / name).unlink(missing_ok=True)
        fsync_dir(path)  # the old run's files stay gone after a power cut: never mixed with the new run's
    try:
        make_dirs(path)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(f"cannot write to --out {path}: {exc.strerror}") from None
    return path


def agreed_changes(saved: Any, changes: dict[str, Any], flag: str) -> dict[str, Any]:
    """The settings a continued run takes from ``changes``: ``device``, ``out`` and ``loggers`` only
    (none of them changes what is computed).

    Any other setting given again must equal the saved run's; ``"auto"`` (``--modules auto``,
    ``--cache auto``) agrees with whatever it resolved to when the run started, so the same command
    line can be run again and again.

    Raises:
        UserError: a setting contradicts the saved run (``flag`` says which option was continuing it).
    """
    changed = {}
    for key, value in changes.items():
        if key in ("device", "out", "loggers"):
            changed[key] = value
        elif getattr(saved, key) != value and value != "auto":
            raise UserError(f"{flag}: --{key.replace('_', '-')} {value} contradicts the saved run "
                            f"({getattr(saved, key)}); start a new run with --out instead")
    return changed


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically: a reader never sees half a file, a power cut leaves the old one or the new one."""
    write_atomically(path, json.dumps(data, indent=2, default=str).encode("utf-8"))


def truncate_metrics(path: Path, size: int) -> None:
    """Cut ``metrics.jsonl`` back to what it held at the checkpoint a run resumes from."""
    if path.exists() and path.stat().st_size > size:
        with path.open("r+b") as fh:
            fh.truncate(size)


def save_weights(path: Path, net: torch.nn.Module, meta: dict[str, Any]) -> None:
    """Save the network's weights with what is needed to rebuild it (atomic, durable)."""
    state = {"format": "edgetrgl-model/1", "meta": meta,
             "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}}
    write_atomically(path, lambda fh: torch.save(state, fh))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # NotADirectory: a file given where a run folder belongs
        raise UserError(f"{path} not found: is this an edgetrgl run folder?") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not valid JSON)") from None
