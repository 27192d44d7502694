"""Tables (markdown), aggregated JSON and PNGs from the accuracy benchmark's ``runs.jsonl``.

Means over seeds with a 95% confidence interval (Student's t, n - 1 degrees of freedom); the
TRGL - VanGL and TRGL - e2e differences are paired by seed (same training subset, same init seed).
Accuracies are in percent. Runs on whatever cells have finished, so it works on a partial grid.

    python benchmarks/accuracy/report.py            # results/ -> results/tables.md, summary.json, figures/
    python benchmarks/accuracy/report.py --quick    # results_quick/
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DEFAULT_TAUS, FRACTIONS, REGIME_FRACTIONS, TAU_FRACTION, TAUS  # noqa: E402

from edgetrgl.plots import mean_ci95, plot_module_curves  # noqa: E402

HERE = Path(__file__).resolve().parent


def load(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def fmt(values: list[float], digits: int = 1) -> str:
    """'mean ± half-width (n)' in percent; '—' if there are no values."""
    if not values:
        return "—"
    mean, half = mean_ci95([100 * v for v in values])
    return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}") + f" ({len(values)})"


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    """Mean of a - b over the seeds both have, with its 95% CI, in points."""
    seeds = sorted(set(a) & set(b))
    return fmt([a[s] - b[s] for s in seeds]) if seeds else "—"


class Runs:
    """Index of finished cells: select by part and config fields, get {seed: value}."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def select(self, part: str, **fields) -> list[dict]:
        out = []
        for r in self.rows:
            c = r["config"]
            if r["part"] == part and all(c.get(k) == v for k, v in fields.items()):
                out.append(r)
        return out

    def by_seed(self, part: str, key: str = "last", **fields) -> dict[int, float]:
        return {r["config"]["seed"]: r[key] for r in self.select(part, **fields)}


def core_table(runs: Runs, fractions) -> tuple[str, dict]:
    head = ("| train images (fraction) | epochs / module | VanGL last | TRGL last | e2e | VanGL best | TRGL best "
            "| TRGL − VanGL (last) | TRGL − e2e (last) |\n|---|---|---|---|---|---|---|---|---|\n")
    lines, agg = [], {}
    for f in fractions:
        v = runs.select("core", train_fraction=f, regime="sequential", method="vangl")
        t = runs.select("core", train_fraction=f, regime="sequential", method="trgl")
        e = runs.select("core", train_fraction=f, regime="e2e")
        if not (v or t or e):
            continue
        size = (v or t or e)[0]["train_size"]
        epochs = (v or t or e)[0]["config"]["epochs"]
        vl, tl, el = (runs.by_seed("core", "last", train_fraction=f, **sel) for sel in
                      (dict(regime="sequential", method="vangl"), dict(regime="sequential", method="trgl"), dict(regime="e2e")))
        vb, tb = (runs.by_seed("core", "best", train_fraction=f, regime="sequential", method=m) for m in ("vangl", "trgl"))
        lines.append(f"| {size} ({100 * f:g}%) | {epochs} | {fmt(list(vl.values()))} | {fmt(list(tl.values()))} | "
                     f"{fmt(list(el.values()))} | {fmt(list(vb.values()))} | {fmt(list(tb.values()))} | "
                     f"{paired(tl, vl)} | {paired(tl, el)} |")
        agg[f] = {"vangl_last": vl, "trgl_last": tl, "e2e": el, "vangl_best": vb, "trgl_best": tb}
    return head + "\n".join(lines) + "\n", agg


def regimes_table(runs: Runs) -> str:
    head = ("| train images | regime | VanGL last | TRGL last | VanGL best | TRGL best | TRGL − VanGL (last) |\n"
            "|---|---|---|---|---|---|---|\n")
    lines = []
    for f in REGIME_FRACTIONS:
        for regime in ("sequential", "multilap", "parallel"):
            part = "core" if regime == "sequential" else "regimes"
            sel = dict(train_fraction=f, regime=regime)
            vl, tl = (runs.by_seed(part, "last", method=m, **sel) for m in ("vangl", "trgl"))
            vb, tb = (runs.by_seed(part, "best", method=m, **sel) for m in ("vangl", "trgl"))
            if not (vl or tl):
                continue
            size = runs.select(part, **sel)[0]["train_size"]
            lines.append(f"| {size} ({100 * f:g}%) | {regime} | {fmt(list(vl.values()))} | {fmt(list(tl.values()))} | "
                         f"{fmt(list(vb.values()))} | {fmt(list(tb.values()))} | {paired(tl, vl)} |")
    return head + "\n".join(lines) + "\n"


def tau_table(runs: Runs) -> tuple[str, dict]:
    vangl = runs.by_seed("core", "last", train_fraction=TAU_FRACTION, regime="sequential", method="vangl")
    vangl_best = runs.by_seed("core", "best", train_fraction=TAU_FRACTION, regime="sequential", method="vangl")
    head = ("| tau | constant: last | constant: best | double: last | double: best | double − VanGL (last, paired) |\n"
            "|---|---|---|---|---|---|\n")
    lines, agg = [], {}
    for tau in TAUS:
        cells = {s: runs.select("tau", tau=tau, tau_schedule=s) for s in ("constant", "double")}
        if not any(cells.values()):
            continue
        last = {s: {r["config"]["seed"]: r["last"] for r in c} for s, c in cells.items()}
        best = {s: {r["config"]["seed"]: r["best"] for r in c} for s, c in cells.items()}
        agg[tau] = {"last": last, "best": best}
        lines.append(f"| {tau:g} | {fmt(list(last['constant'].values()))} | {fmt(list(best['constant'].values()))} | "
                     f"{fmt(list(last['double'].values()))} | {fmt(list(best['double'].values()))} | "
                     f"{paired(last['double'], vangl)} |")
    mult = runs.select("tau", tau_schedule="multiplier")
    ml = {r["config"]["seed"]: r["last"] for r in mult}
    mb = {r["config"]["seed"]: r["best"] for r in mult}
    agg["multiplier"] = {"last": ml, "best": mb}
    agg["vangl"] = {"last": vangl, "best": vangl_best}
    lines.append(f"| multiplier (tau unused; lambda from 1, +CE every 50 steps) | — | — | {fmt(list(ml.values()))} | "
                 f"{fmt(list(mb.values()))} | {paired(ml, vangl)} |")
    lines.append(f"| VanGL (no transport), same cells' seeds from the core grid | — | — | {fmt(list(vangl.values()))} | "
                 f"{fmt(list(vangl_best.values()))} | 0 |")
    return head + "\n".join(lines) + "\n", agg


def lr_table(runs: Runs) -> str:
    head = ("| train images | lr | VanGL last | TRGL last | e2e | VanGL best | TRGL best | TRGL − VanGL (last) | TRGL − e2e (last) |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for f in (0.01, 0.02):
        for part, lr in (("core", 0.05), ("lr", 0.01)):
            vl, tl = (runs.by_seed(part, "last", train_fraction=f, regime="sequential", method=m, lr=lr) for m in ("vangl", "trgl"))
            vb, tb = (runs.by_seed(part, "best", train_fraction=f, regime="sequential", method=m, lr=lr) for m in ("vangl", "trgl"))
            el = runs.by_seed(part, "last", train_fraction=f, regime="e2e", lr=lr)
            if not (vl or tl):
                continue
            lines.append(f"| {10 * max(1, round(f * 400))} ({100 * f:g}%) | {lr} | {fmt(list(vl.values()))} | "
                         f"{fmt(list(tl.values()))} | {fmt(list(el.values()))} | {fmt(list(vb.values()))} | "
                         f"{fmt(list(tb.values()))} | {paired(tl, vl)} | {paired(tl, el)} |")
    return head + "\n".join(lines) + "\n"


def epochs_table(runs: Runs) -> str:
    head = ("| epochs | epochs_step | epochs per module | VanGL last | TRGL last | VanGL best | TRGL best | "
            "TRGL − VanGL (last) | wall time TRGL (s) |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for e, s in ((1, 0), (2, 0), (4, 0), (1, 1)):
        sel = dict(epochs=e, epochs_step=s)
        vl, tl = (runs.by_seed("epochs", "last", method=m, **sel) for m in ("vangl", "trgl"))
        vb, tb = (runs.by_seed("epochs", "best", method=m, **sel) for m in ("vangl", "trgl"))
        if not (vl or tl):
            continue
        times = [r["wall_time_s"] for r in runs.select("epochs", method="trgl", **sel)]
        per_module = ", ".join(str(e + k * s) for k in range(4))
        lines.append(f"| {e} | {s} | {per_module} | {fmt(list(vl.values()))} | {fmt(list(tl.values()))} | "
                     f"{fmt(list(vb.values()))} | {fmt(list(tb.values()))} | {paired(tl, vl)} | "
                     f"{sum(times) / max(len(times), 1):.0f} |")
    return head + "\n".join(lines) + "\n"


def tau_default_table(runs: Runs) -> str:
    """tau on the default setting; tau 1 and VanGL come from the epochs part (epochs=2 is the default)."""
    vangl = runs.by_seed("epochs", "last", method="vangl", epochs=2, epochs_step=0)
    head = ("| tau (double schedule) | TRGL last | TRGL best | TRGL − VanGL (last, paired) |\n|---|---|---|---|\n")
    lines = []
    for tau in sorted({*DEFAULT_TAUS, 1.0}):
        part, sel = ("epochs", dict(epochs=2, epochs_step=0)) if tau == 1.0 else ("tau_default", {})
        last = runs.by_seed(part, "last", method="trgl", tau=tau, **sel)
        best = runs.by_seed(part, "best", method="trgl", tau=tau, **sel)
        if last:
            lines.append(f"| {tau:g} | {fmt(list(last.values()))} | {fmt(list(best.values()))} | {paired(last, vangl)} |")
    if vangl:
        best = runs.by_seed("epochs", "best", method="vangl", epochs=2, epochs_step=0)
        lines.append(f"| VanGL | {fmt(list(vangl.values()))} | {fmt(list(best.values()))} | 0 |")
    return head + "\n".join(lines) + "\n"


def timing_table(rows: list[dict]) -> str:
    per_part = defaultdict(lambda: [0, 0.0, 0.0])
    for r in rows:
        p = per_part[r["part"]]
        p[0] += 1
        p[1] += r["wall_time_s"]
        p[2] += r["other_busy_cores"] * r["wall_time_s"]
    lines = ["| part | cells | wall time (min) | other processes' load (mean busy cores) |", "|---|---|---|---|"]
    total = sum(p[1] for p in per_part.values())
    for part, (n, wall, busy) in per_part.items():
        lines.append(f"| {part} | {n} | {wall / 60:.1f} | {busy / max(wall, 1e-9):.2f} |")
    lines.append(f"| **all** | {len(rows)} | **{total / 60:.1f}** | |")
    return "\n".join(lines) + "\n"


def figures(runs: Runs, figdir: Path, tau_agg: dict) -> list[Path]:
    written = []
    def seeds(part, **sel):
        return [r["test_accuracy"] for r in sorted(runs.select(part, **sel), key=lambda r: r["config"]["seed"])]

    for f in FRACTIONS:
        curves = {name: seeds("core", train_fraction=f, regime="sequential", method=m) for name, m in (("VanGL", "vangl"), ("TRGL", "trgl"))}
        curves = {k: v for k, v in curves.items() if v}
        if not curves:
            continue
        e2e = [r["last"] for r in runs.select("core", train_fraction=f, regime="e2e")]
        size = runs.select("core", train_fraction=f)[0]["train_size"]
        written.append(plot_module_curves(curves, figdir / f"curves_resnet20_{size}.png",
                                          title=f"ResNet-20 block-wise (9 modules), sequential, {size} training images "
                                                f"({100 * f:g}% of mnist5k)",
                                          references={f"e2e (mean of {len(e2e)})": sum(e2e) / len(e2e)} if e2e else None))
    deep = {name: seeds("curves", method=m) for name, m in (("VanGL", "vangl"), ("TRGL", "trgl"))}
    if any(deep.values()):
        first = runs.select("curves")[0]
        size, width = first["train_size"], first["config"]["model_options"]["width"]
        written.append(plot_module_curves({k: v for k, v in deep.items() if v}, figdir / f"curves_resnet56w{width}_{size}.png",
                                          title=f"ResNet-56 width {width}, block-wise (27 modules), sequential, "
                                                f"{size} training images"))
    written += _tau_figure(tau_agg, figdir)
    return written


def _tau_figure(agg: dict, figdir: Path) -> list[Path]:
    taus = [t for t in TAUS if t in agg]
    if not taus:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for schedule in ("constant", "double"):
        pts = [(t, mean_ci95([100 * v for v in agg[t]["last"][schedule].values()])) for t in taus if agg[t]["last"][schedule]]
        if pts:
            means = [p[1][0] for p in pts]
            half = [0.0 if math.isnan(p[1][1]) else p[1][1] for p in pts]
            # clip the bars to [0, 100]: with 2 seeds the t-interval (t = 12.7) can pass both ends
            yerr = [[min(h, m) for m, h in zip(means, half)], [min(h, 100 - m) for m, h in zip(means, half)]]
            ax.errorbar([p[0] for p in pts], means, yerr=yerr, marker="o", capsize=3,
                        label=f"TRGL, {schedule} schedule")
    for name, style in (("multiplier", "-."), ("vangl", "--")):
        values = list(agg.get(name, {}).get("last", {}).values())
        if values:
            ax.axhline(100 * sum(values) / len(values), linestyle=style, color="0.3" if name == "vangl" else "tab:green",
                       label=f"{'TRGL, multiplier schedule' if name == 'multiplier' else 'VanGL'}: "
                             f"{100 * sum(values) / len(values):.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("tau (the double schedule uses tau/2 for the first half of the modules)")
    ax.set_ylabel("last-module test accuracy (%)")
    ax.set_title(f"tau sensitivity: ResNet-20 block-wise, sequential, {10 * round(TAU_FRACTION * 400)} training images", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = figdir / "tau_sweep.png"
    fig.savefig(path)
    return [path]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="report on results_quick/")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    results = args.results or HERE / ("results_quick" if args.quick else "results")
    rows = load(results / "runs.jsonl")
    runs = Runs(rows)
    core, core_agg = core_table(runs, FRACTIONS)
    tau, tau_agg = tau_table(runs)
    sections = [
        ("Block-wise ResNet-20 (9 modules), sequential, VanGL vs TRGL vs e2e", core),
        ("Regimes: sequential, multilap (2 laps), parallel", regimes_table(runs)),
        (f"tau x schedule sweep (sequential, {10 * round(TAU_FRACTION * 400)} training images)", tau),
        ("Learning rate check: library default 0.05 vs 0.01", lr_table(runs)),
        ("Epochs on the default setting (resnet20, K = 4, full 4,000 images, tau 1 double)", epochs_table(runs)),
        ("tau on the default setting (resnet20, K = 4, full 4,000 images, 2 epochs per module)", tau_default_table(runs)),
        ("Wall time", timing_table(rows)),
    ]
    md = "".join(f"### {title}\n\n{body}\n" for title, body in sections)
    (results / "tables.md").write_text(md)
    agg = {"core": {str(f): v for f, v in core_agg.items()}, "tau": {str(k): v for k, v in tau_agg.items()}}
    (results / "summary.json").write_text(json.dumps(agg, indent=1) + "\n")
    figdir = results.parent / ("figures_quick" if results.name.endswith("_quick") else "figures")
    written = figures(runs, figdir, tau_agg)
    print(md)
    print("wrote", results / "tables.md", results / "summary.json", *written, sep="\n  ", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
