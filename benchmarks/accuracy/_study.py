"""What run.py, report.py and the studies share: a study by name, its rows, and how a figure is printed."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the studies; benchmarks/_common.py

from edgetrgl.plots import mean_ci95  # noqa: E402


def studies() -> list[str]:
    return sorted(p.stem.removeprefix("study_") for p in HERE.glob("study_*.py"))


def load(name: str):
    """The study module ``study_<name>.py``; an unknown name is one line and exit 2."""
    if name not in studies():
        usage(f"unknown study {name!r}; choose from {', '.join(studies())}")
    return importlib.import_module(f"study_{name}")


def usage(message: str):
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_rows(path: Path) -> list[dict]:
    """The JSON lines of ``path`` (none if it is missing), without a last line cut short by a kill."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # that run goes again
    return rows


def append_row(log: Path, record: dict) -> None:
    """One JSON line, flushed at once: a kill loses at most the run in progress."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def fmt(values: list[float], count: bool = False) -> str:
    """'mean ± half-width of the 95% interval' in percent (and ' (n)'); '—' without values."""
    if not values:
        return "—"
    mean, half = mean_ci95([100 * v for v in values])
    return f"{mean:.1f}" + ("" if math.isnan(half) else f" ± {half:.1f}") + (f" ({len(values)})" if count else "")


def paired(a: dict, b: dict, count: bool = False) -> str:
    """Mean of a - b over the seeds both have (``{seed: value}``), in points, with its interval."""
    seeds = sorted(set(a) & set(b))
    return fmt([a[s] - b[s] for s in seeds], count) if seeds else "—"
