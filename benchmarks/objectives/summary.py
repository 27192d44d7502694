"""The README's accuracy column from results.csv: best module's test accuracy per method, mean and
95% interval (Student's t) over the seeds run.

usage: python benchmarks/objectives/summary.py [results.csv]
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

from edgetrgl.plots import mean_ci95


def summarize(path: Path) -> dict[str, tuple[float, float, int]]:
    """method -> (mean %, half-width of the 95% interval %, seeds)."""
    by_method: dict[str, list[float]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            by_method[row["method"]].append(100 * float(row["best_accuracy"]))
    return {m: (*mean_ci95(v), len(v)) for m, v in by_method.items()}


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results.csv")
    for method, (mean, half, n) in summarize(path).items():
        print(f"| `{method}` | {mean:.1f} ± {half:.1f}% ({n} seeds) |")
