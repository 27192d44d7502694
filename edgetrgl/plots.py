"""Plots of per-module test accuracy: one run, or several methods (with seeds) side by side.

matplotlib is optional (``pip install 'edgetrgl[plot]'``). The figures are drawn on a
``Figure`` with the Agg canvas directly, never through ``pyplot``, so plotting from a script, a
test or a notebook never switches the caller's matplotlib backend.

    from edgetrgl.plots import plot_module_curves
    plot_module_curves({"VanGL": [[.8, .85, .84], [.79, .86, .83]], "TRGL": [[.78, .86, .9]]},
                       "curves.png", title="ResNet-20, 2% of mnist5k")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgetrgl.errors import UserError

# Two-sided 95% quantiles of Student's t (0.975 quantile) for 1..30 degrees of freedom; beyond,
# the normal 1.96 is within 2%. scipy is not a dependency, and these few numbers never change.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (for a two-sided 95% interval)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.960


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of its 95% confidence interval (t-distribution, n - 1 degrees of freedom).

    One value gives a half-width of ``nan`` (no spread can be estimated from one sample).
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n)


def plot_module_curves(
    runs: Mapping[str, Sequence[float] | Sequence[Sequence[float]]],
    path: str | Path,
    title: str = "test accuracy after each module",
    references: Mapping[str, float] | None = None,
) -> Path:
    """Plot test accuracy after each module for several labelled runs, and write a PNG.

    Args:
        runs: label -> per-module accuracies (fractions in [0, 1], as :class:`RunResult` reports
            them; plotted in percent), or label -> a list of such lists (one per seed), drawn as
            their mean with a shaded 95% confidence band (t-distribution). Seeds of one label must
            have the same number of modules; labels may differ (e.g. 9 and 27 modules).
        path: the PNG to write (folders are created).
        title: the figure title.
        references: label -> one accuracy drawn as a dashed horizontal line (e.g. end-to-end).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        UserError: matplotlib is not installed.
        ValueError: no runs, an empty run, or seeds of one label with different lengths.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    if not runs:
        raise ValueError("plot_module_curves needs at least one run")
    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    longest = 1
    for label, values in runs.items():
        seeds = _as_seeds(label, values)
        n = len(seeds[0])
        longest = max(longest, n)
        x = list(range(1, n + 1))
        stats = [mean_ci95([s[k] for s in seeds]) for k in range(n)]
        mean = [100 * m for m, _ in stats]
        (line,) = ax.plot(x, mean, marker="o", markersize=3, linewidth=1.6,
                          label=label if len(seeds) == 1 else f"{label} (mean of {len(seeds)}, 95% CI)")
        if len(seeds) > 1:
            half = [100 * h for _, h in stats]
            # an accuracy lies in [0, 100]: with few seeds the t-interval can reach past both ends
            ax.fill_between(x, [max(0.0, m - h) for m, h in zip(mean, half)], [min(100.0, m + h) for m, h in zip(mean, half)],
                            color=line.get_color(), alpha=0.18, linewidth=0)
    for label, value in (references or {}).items():
        ax.axhline(100 * value, linestyle="--", linewidth=1.2, color="0.35" if len(references) == 1 else None,
                   label=f"{label}: {100 * value:.1f}%")
    ax.set_xlabel("module (test accuracy of its auxiliary head)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(range(1, longest + 1, max(1, longest // 14 + (longest > 14))))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def run_title(summary: Mapping[str, Any]) -> str:
    """A run's plot title: model / regime and method (with the transport term's tau when it was on) / data."""
    cfg = summary.get("config") or {}
    dataset = (summary.get("dataset") or {}).get("name") or cfg.get("dataset", "?")
    regime = cfg.get("regime", "?")
    one_module = len(summary.get("modules") or []) == 1  # end to end: no greedy method, no tau
    what = regime if one_module else f"{regime} {cfg.get('method', '?')}"
    # any objective may carry the transport term (--transport on); summaries before the registry lack "objective"
    transport = (summary.get("objective") or {}).get("transport", cfg.get("method") == "trgl")
    if transport and not one_module:
        what += (" + transport" if cfg.get("method") != "trgl" else "") + f" (tau {cfg.get('tau')}, {cfg.get('tau_schedule')})"
    title = f"{summary.get('model') or cfg.get('model', '?')} / {what} / {dataset}"
    if cfg.get("train_fraction", 1.0) < 1.0:
        title += f" ({100 * cfg['train_fraction']:g}% of train)"
    return title


def plot_run(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Plot one run's per-module test accuracy from its run folder's ``summary.json`` dict.

    The best module is marked; the title names the model, regime, method and dataset.

    Args:
        summary: the parsed ``summary.json`` of a finished run (``modules`` with ``test_accuracy``).
        path: the PNG to write.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        UserError: matplotlib is not installed, or the summary holds no module accuracies.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    modules = [m for m in summary.get("modules") or [] if m.get("test_accuracy") is not None]
    if not modules:
        raise UserError("the run's summary holds no module test accuracies to plot")
    title = run_title(summary)
    x = [m["module"] for m in modules]
    y = [100 * m["test_accuracy"] for m in modules]
    fig = Figure(figsize=(6.4, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, y, marker="o", linewidth=1.6)
    chosen = (summary.get("best_module") or {}).get("module")  # the run's pick: by validation where it had a split
    best = x.index(chosen) if chosen in x else max(range(len(y)), key=y.__getitem__)
    ax.plot([x[best]], [y[best]], marker="*", markersize=14, linestyle="none", color="tab:red",
            label=f"best: module {x[best]}, {y[best]:.2f}%")
    ax.set_xlabel("module")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.set_xticks(x if len(x) <= 16 else x[:: len(x) // 12 + 1])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return _save(fig, path)


def _as_seeds(label: str, values) -> list[list[float]]:
    """Normalise one label's values to a list of per-seed lists of floats."""
    values = list(values)
    if not values:
        raise ValueError(f"run {label!r} has no module accuracies")
    seeds = [list(map(float, v)) for v in values] if isinstance(values[0], (list, tuple)) else [list(map(float, values))]
    lengths = {len(s) for s in seeds}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"run {label!r}: every seed needs the same, non-zero number of modules, got {sorted(lengths)}")
    return seeds


def new_figure(**kwargs):
    """A matplotlib Figure drawn by the Agg canvas: the one place the backend is chosen (no display,
    no global ``matplotlib.use``). Raises UserError naming the extra when matplotlib is missing."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("plotting needs matplotlib: pip install 'edgetrgl[plot]'") from None
    return Figure, FigureCanvasAgg


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
