"""Show a comparison: a rich table, a JSON file, a PNG bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from edgetrgl.config import format_bytes
from edgetrgl.errors import UserError


def bench_table(report: dict[str, Any]) -> Table:
    """The comparison as a table: one row per method, figures in MiB/GiB, ratios to e2e."""
    s = report["setting"]
    estimated = report["mode"] == "estimate"
    title = (f"{s['model']} {s['in_channels']}x{s['image_size']}x{s['image_size']}, batch {s['batch_size']}, "
             f"K={s['modules']} ({s['split']}), {'estimate (fake tensors)' if estimated else 'device ' + s['device']}")
    table = Table(title=title)
    table.add_column("method", no_wrap=True)
    table.add_column("estimated peak" if estimated else "tensor peak", justify="right")
    table.add_column("savings vs e2e", justify="right")
    cuda = any("cuda_max_allocated_bytes" in r for r in report["results"])
    if not estimated:
        table.add_column("RSS peak Δ", justify="right")
        if cuda:
            table.add_column("CUDA max alloc", justify="right")
            table.add_column("CUDA max reserved", justify="right")
        table.add_column("samples/s", justify="right")
        table.add_column("time/sample vs e2e", justify="right")
    for r in report["results"]:
        row = [r["method"], format_bytes(r.get("peak_bytes")), _percent(r.get("savings_vs_e2e"))]
        if not estimated:
            row.append(format_bytes(r.get("peak_rss_bytes")))
            if cuda:
                row += [format_bytes(r.get("cuda_max_allocated_bytes")), format_bytes(r.get("cuda_max_reserved_bytes"))]
            row += [_number(r.get("samples_per_s")), _overhead(r.get("time_vs_e2e"))]
        table.add_row(*row)
    return table


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as JSON (creating folders). Raises UserError if the file cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write --json {path}: {exc.strerror}") from None


def write_plot(report: dict[str, Any], path: str | Path) -> None:
    """A PNG bar chart: peak memory per method (and samples/s when measured).

    Raises:
        UserError: matplotlib is not installed, or the file cannot be written.
    """
    from edgetrgl.plots import new_figure

    results = [r for r in report["results"] if r.get("peak_bytes") is not None]
    names = [r["method"] for r in results]
    timed = any(r.get("samples_per_s") for r in results)
    fig = new_figure(figsize=(11 if timed else 6, 4))
    axes = fig.subplots(1, 2 if timed else 1, squeeze=False)
    ax = axes[0][0]
    bars = ax.bar(names, [r["peak_bytes"] / 2**20 for r in results], color=["grey"] + ["tab:blue"] * (len(names) - 1))
    for bar, r in zip(bars, results):
        ax.annotate(_percent(r.get("savings_vs_e2e")), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("peak tensor memory (MiB)")
    ax.set_title("estimated peak" if report["mode"] == "estimate" else "measured peak (MemTracker)")
    if timed:
        axes[0][1].bar(names, [r.get("samples_per_s") or 0 for r in results], color="tab:green")
        axes[0][1].set_ylabel("samples / s (median step)")
        axes[0][1].set_title(f"device {report['setting']['device']}")
    for a in axes[0]:
        a.tick_params(axis="x", labelrotation=45)
    s = report["setting"]
    fig.suptitle(f"{s['model']} {s['image_size']}x{s['image_size']}, batch {s['batch_size']}, K={s['modules']} ({s['split']})")
    fig.tight_layout()
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UserError(f"cannot write --plot {path}: {exc.strerror}") from None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{round(100 * value)}%"  # round(): no "-0%"


def _overhead(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
