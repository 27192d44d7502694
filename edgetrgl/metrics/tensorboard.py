"""The TensorBoard sink: each module's numbers as scalars in ``<run>/tb/``.

``tensorboard --logdir runs/`` then shows every run folder side by side. A record's step is its line
number in ``metrics.jsonl`` (a point on a chart and its JSON line find each other); a resumed run
opens its writer with ``purge_step`` at the first step past its checkpoint, so the points a killed
run wrote after that checkpoint are dropped, not drawn twice.

Tags: ``module_K/NAME`` for every number of an ``epoch`` or ``module`` record (training ``ce``,
``transport``, ``train_accuracy``, ``lr``, ``tau``, ``test_accuracy``, ...); sizes in MiB
(``peak_bytes`` -> ``tensor_peak_MiB``, ``peak_rss_bytes`` -> ``peak_rss_MiB``); seconds as ``epoch_s``/``module_s``; a table of numbers
(``phases_s``) as one tag per entry (``module_1/phases_s/train``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetrgl.errors import UserError

INSTALL = "--log tensorboard needs the tensorboard package: pip install 'edgetrgl[tensorboard]'"
_RENAMED = {"peak_bytes": "tensor_peak"}  # beside peak_rss: which peak it is
_INDEX = {"module", "lap", "epoch", "epochs", "time"}  # where a record sits, not what it measured


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``.

    Raises:
        UserError: the tensorboard package is not installed (one line, how to install it).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(INSTALL) from None
    return SummaryWriter


class TensorBoard:
    """Write the per-module numbers of each record as TensorBoard scalars.

    Args:
        folder: the event files' folder (``<run>/tb``).
        first_step: the step of the first record this writer gets; above 1 (a resume), events a
            previous writer left at this step or later are purged.
    """

    def __init__(self, folder: str | Path, first_step: int = 1) -> None:
        writer_class = summary_writer_class()
        self.folder = Path(folder)
        self._writer = writer_class(log_dir=str(self.folder), purge_step=first_step if first_step > 1 else None)

    def write(self, record: dict[str, Any], step: int, echo: str | None = None) -> None:
        if record.get("event") not in ("epoch", "module") or "module" not in record:
            return  # start, resume, warnings: no per-module numbers
        prefix = f"module_{record['module']}/"
        for tag, value in scalars(record):
            self._writer.add_scalar(prefix + tag, value, global_step=step, walltime=record.get("time"))
        self._writer.flush()  # one record per epoch: cheap, and a killed run keeps what it drew

    def close(self) -> None:
        self._writer.close()


def scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
    """``[(tag, value)]`` of a record's numbers (index fields left out, bytes as MiB)."""
    found = []
    for key, value in record.items():
        if key in _INDEX or key == "event":
            continue
        if isinstance(value, dict):
            found += [(f"{key}/{name}", v) for name, v in value.items() if _number(v)]
        elif _number(value):
            if key.endswith("_bytes"):
                key, value = _RENAMED.get(key, key[: -len("_bytes")]) + "_MiB", value / 2**20
            elif key == "time_s":
                key = f"{record['event']}_s"
            found.append((key, float(value)))
    return found


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
