"""Show a comparison: a rich table, a JSON file, a PNG memory-time chart with the Pareto front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from edgetrgl.bench.pareto import mark_front
from edgetrgl.bench.variants import Method, parse_method
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
    if estimated:
        table.add_column("GFLOP/sample", justify="right")
    cuda = any("cuda_max_allocated_bytes" in r for r in report["results"])
    cached = bool(s.get("cache_samples"))
    if cached:
        table.add_column("host cache", justify="right")
        if estimated:
            table.add_column("step + cache", justify="right")
    if not estimated:
        table.add_column("RSS peak Δ" + (" (with cache)" if cached else ""), justify="right")
        if cuda:
            table.add_column("CUDA max alloc", justify="right")
            table.add_column("CUDA max reserved", justify="right")
        table.add_column("time/sample", justify="right")
        table.add_column("samples/s", justify="right")
        table.add_column("time/sample vs e2e", justify="right")
    table.add_column("Pareto front", justify="center")
    for r in report["results"]:
        row = [r["method"], format_bytes(r.get("peak_bytes")), _percent(r.get("savings_vs_e2e"))]
        if estimated:
            flops = r.get("flops_per_sample")
            row.append("n/a" if flops is None else f"{flops / 1e9:.3g}")
        if cached:
            row.append(format_bytes(r.get("cache_bytes")))
            if estimated:
                row.append(format_bytes(r.get("unified_peak_bytes")))
        if not estimated:
            row.append(format_bytes(r.get("peak_rss_bytes")))
            if cuda:
                row += [format_bytes(r.get("cuda_max_allocated_bytes")), format_bytes(r.get("cuda_max_reserved_bytes"))]
            row += [_ms(r.get("time_per_sample_s")), _number(r.get("samples_per_s")), _overhead(r.get("time_vs_e2e"))]
        row.append("*" if r.get("on_pareto_front") else "")
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


def write_plot(report: dict[str, Any], path: str | Path, notes: dict[str, str] | None = None) -> None:
    """A PNG memory-time chart: every method a point (peak, time per sample), the Pareto front marked.

    ``notes`` (method -> short text, e.g. its accuracy cost) are printed under each point's label.
    Micro-batched methods (``+mbN``) are diamonds.

    The y axis is the measured median time per sample, or for an estimate the FLOPs per sample
    (``report["pareto"]["y"]``, set by :func:`edgetrgl.bench.pareto.mark_front`).

    Raises:
        UserError: matplotlib is not installed, or the file cannot be written.
    """
    from edgetrgl.plots import new_figure

    if "pareto" not in report:
        mark_front(report)
    y_key = report["pareto"]["y"]
    scale, y_label = ((1e3, "time per sample (ms, median step)") if y_key == "time_per_sample_s"
                      else (1e-9, "work per sample (GFLOP, one step)"))
    points = [r for r in report["results"] if r.get("peak_bytes") is not None and r.get(y_key) is not None]
    fig = new_figure(figsize=(8, 5.5))
    ax = fig.subplots()
    groups: dict[tuple[float, float], list[dict[str, Any]]] = {}  # equal points share one label
    for r in points:
        groups.setdefault((r["peak_bytes"] / 2**20, r[y_key] * scale), []).append(r)
    labels = []
    for (x, y), group in sorted(groups.items()):
        on_front = group[0]["on_pareto_front"]  # equal points are on the front together
        spec = parse_method(group[0]["method"])
        marker = ("D" if spec.micro_batch else "s" if spec.is_baseline
                  else "o" if spec.objective in ("vangl", "trgl") else "^")  # other objectives
        ax.scatter([x], [y], s=36, marker=marker, color=_colour(spec), zorder=3,
                   edgecolors="red" if on_front else "none", linewidths=1.5)
        label = " = ".join(r["method"] for r in group)
        label += "".join(f"\n{notes[r['method']]}" for r in group[:1] if notes and notes.get(r["method"]))
        labels.append((x, y, label, dict(color="red" if on_front else "black",
                                          fontweight="bold" if on_front else "normal")))
    front = sorted((r for r in points if r["on_pareto_front"]), key=lambda r: r["peak_bytes"])
    if front:
        ax.plot([r["peak_bytes"] / 2**20 for r in front], [r[y_key] * scale for r in front], color="red",
                drawstyle="steps-post", linewidth=1, zorder=2, label="Pareto front (none both smaller and faster)")
        ax.legend(loc="best", fontsize=8)
    peaks = [r["peak_bytes"] for r in points]
    if peaks and min(peaks) > 0 and max(peaks) / min(peaks) > 20:  # micro-batches span decades: a log axis
        ax.set_xscale("log")
    ax.set_xlabel("peak tensor memory (MiB, " + ("estimated" if report["mode"] == "estimate" else "MemTracker") + ")")
    ax.set_ylabel(y_label)
    ax.margins(x=0.15, y=0.12)  # room for the labels
    ax.grid(alpha=0.3)
    s = report["setting"]
    where = "estimate (fake tensors)" if report["mode"] == "estimate" else f"measured on {s['device']}"
    ax.set_title(f"{s['model']} {s['in_channels']}x{s['image_size']}x{s['image_size']}, batch {s['batch_size']}, "
                 f"K={s['modules']} ({s['split']}), {where}", fontsize=10)
    fig.tight_layout()
    _place_labels(fig, ax, labels)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise UserError(f"cannot write --plot {path}: {exc.strerror}") from None


# where a label may sit around its point (offset in points, alignment), in order of preference
_SPOTS = [((5, 4), "left", "bottom"), ((5, -4), "left", "top"), ((-5, 4), "right", "bottom"),
          ((-5, -4), "right", "top"), ((5, 16), "left", "bottom"), ((5, -16), "left", "top"),
          ((-5, 16), "right", "bottom"), ((-5, -16), "right", "top"), ((0, 28), "center", "bottom"),
          ((0, -28), "center", "top")]


def _place_labels(fig, ax, labels: list[tuple[float, float, str, dict]]) -> None:
    """Annotate each point at the first spot around it where its label overlaps no label placed
    before, no other point and stays inside the figure (else where it overlaps least)."""
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    points = [ax.transData.transform((x, y)) for x, y, _, _ in labels]
    taken = []  # the boxes of the labels placed so far
    for i, (x, y, text, style) in enumerate(labels):
        best = None
        for offset, ha, va in _SPOTS:
            note = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=7, ha=ha, va=va,
                               annotation_clip=False, **style)
            box = note.get_window_extent(renderer).expanded(1.02, 1.05)
            clash = sum(_overlap(box, t) for t in taken)
            near = box.padded(8)  # a marker is about 8 px wide: keep clear of it
            clash += sum(box.width * box.height for j, p in enumerate(points) if j != i and near.contains(*p))
            if not (figure_box.contains(box.x0, box.y0) and figure_box.contains(box.x1, box.y1)):
                clash += box.width * box.height
            if best is None or clash < best[0]:
                if best is not None:
                    best[1].remove()
                best = (clash, note, box)
            else:
                note.remove()
            if clash == 0:
                break
        taken.append(best[2])


def _overlap(a, b) -> float:
    width, height = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _colour(spec: Method) -> str:
    """Baselines grey; ours blue, orange with +ckpt, green with a low precision, purple with both."""
    if spec.is_baseline:
        return "dimgrey" if spec.precision == "fp32" else "darkgreen"
    return {(False, False): "tab:blue", (True, False): "tab:orange", (False, True): "tab:green",
            (True, True): "tab:purple"}[(spec.checkpoint_blocks, spec.precision != "fp32")]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{round(100 * value)}%"  # round(): no "-0%"


def _overhead(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
