"""Fashion-MNIST baselines trained to a plateau: which lr, how many epochs, and what module-wise costs there.

Each method (e2e; VanGL and TRGL, sequential K=4 with no cache, so every module sees a fresh
augmentation each epoch, as e2e does) first runs a small lr grid on one seed and keeps the lr with
the best validation accuracy; then its epochs double (5, 10, 20, 40 per module; e2e: in total)
while the mean validation accuracy over the seeds still rises by half a point. The shorter run
of the first pair that did not pay is the converged one. Selection reads only the validation
split; the test set is reported.

The study's cells and parts are in study_fashionmnist.py; this file holds the rules above (read by
the parts, so the grid grows as results arrive), the tables, the chart, and the measurement of the
whole process's peak per method (``python benchmarks/accuracy/fashionmnist_plateau.py --measure``:
one fresh ``edgetrgl train`` per method, one epoch, its ``peak_rss_bytes``).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _study import fmt, read_rows

METHODS = ("e2e", "vangl", "trgl")
LRS = (0.025, 0.05, 0.1)  # the grid, one seed at GRID_EPOCHS; each method keeps its best
GRID_EPOCHS = 10
EPOCHS = (5, 10, 20, 40)  # per module (e2e: in total); the next one runs only while the last still paid
SEEDS = 3
IMPROVES = 0.005  # "still improving": mean validation accuracy over the seeds up by half a point or more
PART = "plateau"  # the cells' id prefix: the grid's cell at the chosen lr is the sweep's too
MEASURED = "process_peaks.json"
_ROWS: list[dict] = []  # the study's rows so far (prepare()): the grid depends on them


def prepare(rows: list[dict]) -> None:
    _ROWS[:] = rows


def recipe_of(lr: float) -> str:
    return f"fresh-lr{lr}"


def selection_accuracy(row: dict) -> float | None:
    """What a plateau run is judged by: the last module's validation accuracy."""
    return (row.get("val_accuracy") or [None])[-1]


def rows_of(method: str, epochs: int, lr: float, rows: list[dict] | None = None) -> list[dict]:
    return [r for r in (_ROWS if rows is None else rows) if r.get("part") == PART and r["method"] == method
            and r["epochs"] == epochs and r["recipe"] == recipe_of(lr)]


def grid_scores(method: str, rows: list[dict] | None = None) -> dict[float, float]:
    """Validation accuracy of ``method`` at each lr of the grid that has run (seed 0)."""
    out = {}
    for lr in LRS:
        done = [r for r in rows_of(method, GRID_EPOCHS, lr, rows) if r["seed"] == 0]
        if done and selection_accuracy(done[0]) is not None:
            out[lr] = selection_accuracy(done[0])
    return out


def chosen_lr(method: str, rows: list[dict] | None = None) -> float | None:
    """The grid's lr with the best validation accuracy (ties: nearer 0.05, the default); None until it has run."""
    scores = grid_scores(method, rows)
    if len(scores) < len(LRS):
        return None
    return max(LRS, key=lambda lr: (scores[lr], -abs(lr - 0.05)))


def sweep(method: str, lr: float, rows: list[dict] | None = None) -> tuple[list[int], int | None, dict[int, float]]:
    """The epochs to run for ``method`` at ``lr``, the converged one (None while it still improves), and
    the mean validation accuracy at each epochs whose seeds have all run."""
    planned, means = [], {}
    for e in EPOCHS:
        planned.append(e)
        vals = [selection_accuracy(r) for r in rows_of(method, e, lr, rows)]
        if len(vals) < SEEDS or None in vals:
            return planned, None, means
        means[e] = sum(vals) / len(vals)
        if len(means) >= 2 and means[e] - means[planned[-2]] < IMPROVES:
            return planned, planned[-2], means  # the longer run did not pay: the shorter one is converged
    return planned, None, means


# ---- the report ----

def _values(rows: list[dict], field: str) -> list[float]:
    return [r[field] for r in rows]


def grid_table(rows: list[dict]) -> str:
    lines = [f"#### The lr grid (seed 0, {GRID_EPOCHS} epochs per module): validation accuracy of the last module, %\n",
             "| method | " + " | ".join(f"lr {lr}" for lr in LRS) + " | chosen |", "|---|" + "---|" * (len(LRS) + 1)]
    for m in METHODS:
        scores = grid_scores(m, rows)
        cells = [f"{100 * scores[lr]:.1f}" if lr in scores else "—" for lr in LRS]
        lines.append(f"| {m} | {' | '.join(cells)} | {chosen_lr(m, rows) or 'not yet'} |")
    return "\n".join(lines) + "\n"


def sweep_table(rows: list[dict]) -> str:
    lines = ["#### Epochs until validation stops improving (mean ± 95% interval over seeds, %)\n",
             "| method | lr | epochs per module | seeds | validation, last module | test, last module | s / run (median) | |",
             "|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        lr = chosen_lr(m, rows)
        if lr is None:
            lines.append(f"| {m} | grid not finished | | | | | | |")
            continue
        planned, converged, _ = sweep(m, lr, rows)
        for e in planned:
            done = rows_of(m, e, lr, rows)
            if not done:
                lines.append(f"| {m} | {lr} | {e} | 0/{SEEDS} | not run yet | | | |")
                continue
            wall = statistics.median(_values(done, "wall_time_s"))
            mark = "converged" if e == converged else ""
            lines.append(f"| {m} | {lr} | {e} | {len(done)}/{SEEDS} | {fmt([selection_accuracy(r) for r in done])} | "
                         f"{fmt(_values(done, 'last'))} | {wall:.0f} | {mark} |")
    return "\n".join(lines) + "\n"


def converged_rows(method: str, rows: list[dict]) -> tuple[int | None, list[dict]]:
    lr = chosen_lr(method, rows)
    if lr is None:
        return None, []
    epochs = sweep(method, lr, rows)[1]
    return epochs, rows_of(method, epochs, lr, rows) if epochs else []


def verdict_table(rows: list[dict]) -> str:
    """Module-wise against e2e at each one's converged epochs, paired by seed (points, last module, test)."""
    at = {m: converged_rows(m, rows) for m in METHODS}
    lines = ["#### At convergence, paired by seed (points of test accuracy, last module)\n",
             "| comparison | epochs (each at its plateau) | difference |", "|---|---|---|"]
    for a, b in (("vangl", "e2e"), ("trgl", "e2e"), ("trgl", "vangl")):
        (ea, ra), (eb, rb) = at[a], at[b]
        if not (ra and rb):
            lines.append(f"| {a} − {b} | not converged yet | — |")
            continue
        av, bv = ({r["seed"]: r["last"] for r in x} for x in (ra, rb))
        seeds = sorted(set(av) & set(bv))
        lines.append(f"| {a} − {b} | {ea} vs {eb} | {fmt([av[s] - bv[s] for s in seeds])} ({len(seeds)} seeds) |")
    return "\n".join(lines) + "\n"


def tables(rows: list[dict]) -> str:
    return "\n".join([grid_table(rows), sweep_table(rows), verdict_table(rows)])


def chart(rows: list[dict], measured: dict, path: Path) -> Path | None:
    """Two panels sharing the accuracy axis (test, last module, mean ± 95% interval over seeds).
    Left: accuracy against epochs per method, the converged run ringed: where each one stops paying.
    Right: the converged runs against memory, the whole process's peak (filled: runtime, data and any
    cache in host memory, the same RAM on a board) and the tensor peak (hollow) on the same row, the
    frontier drawn through the whole-process points."""
    from edgetrgl.bench.pareto import pareto_front
    from edgetrgl.plots import mean_ci95, new_figure

    series = {}
    for m in METHODS:
        lr = chosen_lr(m, rows)
        if lr is None:
            continue
        planned, converged, _ = sweep(m, lr, rows)
        drawn = [(e, mean_ci95([100 * r["last"] for r in rs])) for e in planned if (rs := rows_of(m, e, lr, rows))]
        if drawn:
            series[m] = (lr, converged, drawn)
    if not series:
        return None
    fig = new_figure(figsize=(9.5, 4.6), dpi=100)
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.1, 1]})
    front_pts = []
    for i, (m, (lr, converged, points)) in enumerate(series.items()):
        colour = f"C{i}"
        xs = [e * (1 + 0.04 * (i - 1)) for e, _ in points]  # methods side by side at each epochs
        left.plot(xs, [y for _, (y, _) in points], color=colour, alpha=0.5, label=f"{m} (lr {lr})")
        for x, (e, (y, half)) in zip(xs, points):
            left.errorbar(x, y, yerr=0 if math.isnan(half) else half, fmt="o", color=colour, capsize=3, markersize=5)
            if e == converged:
                left.scatter([x], [y], s=140, facecolors="none", edgecolors="k", linewidths=1.2, zorder=4)
                if m in measured:
                    proc, tensor = measured[m]["peak_rss_bytes"] / 2**20, measured[m]["peak_bytes"] / 2**20
                    right.errorbar(proc, y, yerr=0 if math.isnan(half) else half, fmt="o", color=colour, capsize=3)
                    right.scatter([tensor], [y], marker="o", facecolors="white", edgecolors=colour, zorder=3)
                    right.plot([tensor, proc], [y, y], color=colour, linestyle=":", alpha=0.6)
                    right.annotate(f"{m}, {e} ep", (proc, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
                    front_pts.append((proc, y))
    if front_pts:
        order = sorted(pareto_front([(x, -y) for x, y in front_pts]), key=lambda j: front_pts[j][0])
        right.step([front_pts[j][0] for j in order], [front_pts[j][1] for j in order], where="post", color="k",
                   alpha=0.5, label="frontier (whole process)")
    right.scatter([], [], marker="o", color="grey", label="whole process (fresh `edgetrgl train`)")
    right.scatter([], [], marker="o", facecolors="white", edgecolors="grey", label="tensors")
    left.scatter([], [], s=140, facecolors="none", edgecolors="k", label="converged")
    left.set_xscale("log", base=2)
    left.set_xticks(list(EPOCHS), [str(e) for e in EPOCHS])
    left.set_xlabel("epochs per module (e2e: in total)")
    left.set_ylabel("test accuracy, last module (%)")
    left.set_title("until validation stops improving", fontsize=9)
    right.set_xscale("log")
    right.set_xlabel("peak memory of the converged run, MiB (log)")
    right.set_title("what the converged runs need", fontsize=9)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Fashion-MNIST 10%, ResNet-20, K=4 sequential (mean ± 95% interval over seeds)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# ---- the whole process's peak, per method, in fresh processes ----

def read_measured(folder: Path) -> dict:
    path = folder / "measured" / MEASURED
    return json.loads(path.read_text())["methods"] if path.exists() else {}


def measure(results: Path, cell_configs: dict[str, dict]) -> Path:
    """One ``edgetrgl train`` per method (its plateau config, one epoch) in a fresh process: VmHWM and the
    tensor peak from its summary.json. The peak does not depend on the epochs or the lr."""
    import os

    out = {}
    with tempfile.TemporaryDirectory(prefix="edgetrgl-plateau-peaks-") as tmp:
        for method, cfg in cell_configs.items():
            run = Path(tmp) / method
            fields = {**cfg, "epochs": 1, "out": str(run)}
            sets = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in fields.items() if v is not None and k != "out"]
            cmd = [sys.executable, "-m", "edgetrgl", "train", "--quiet", "--out", str(run)]
            for s in sets:
                cmd += ["--set", s]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            if done.returncode != 0:
                raise SystemExit(f"error: {method}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            summary = json.loads((run / "summary.json").read_text())
            out[method] = {"peak_rss_bytes": summary["peak_rss_bytes"], "peak_bytes": summary["peak_bytes"],
                           "cache": summary.get("cache"), "config": fields | {"out": ""}}
            print(f"{method}: process {summary['peak_rss_bytes'] / 2**20:.0f} MiB, tensors "
                  f"{summary['peak_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    path = results / "measured" / MEASURED
    path.parent.mkdir(parents=True, exist_ok=True)
    from _common import command, machine

    path.write_text(json.dumps({"command": command(), "machine": machine(), "methods": out}, indent=1) + "\n")
    return path


def main() -> int:
    """``--measure``: the process peaks of the plateau's methods (and, beside them, the same sequential runs
    with the default host cache: one cached view in the same RAM), into the study's results/measured/."""
    import study_fashionmnist as study

    if sys.argv[1:] != ["--measure"]:
        print(__doc__.strip().splitlines()[0] + "\nusage: fashionmnist_plateau.py --measure", file=sys.stderr)
        return 2
    study.prepare(read_rows(study.RESULTS / "runs.jsonl"))
    configs = {}
    for m in METHODS:
        c = study.cell(PART, 0, fraction=0.1, k=4, method=m, recipe_name=recipe_of(chosen_lr(m) or 0.05), epochs=1,
                       test_images=study.SMALL_TEST)
        configs[m] = c["config"]
        if m != "e2e":
            configs[m + "+host-cache"] = {**c["config"], "cache": "host"}
    print(measure(study.RESULTS, configs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
