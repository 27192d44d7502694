"""Tables and the accuracy-memory chart of the Fashion-MNIST study, from ``results/runs.jsonl``.

Means over seeds with a 95% interval (Student's t, n - 1 degrees of freedom), last module and best
module, in percent; the TRGL - VanGL difference is paired by seed (same subset, same init). The
memory is the planner's fake-tensor estimate of a training step's peak (the worst module). Cells
of the grid with no finished run are listed as "not run yet". Works on a partial grid.

    python benchmarks/accuracy/fashionmnist/report.py     # -> results/tables.md, results/summary.json, accuracy_memory.png
    python benchmarks/accuracy/fashionmnist/report.py --readme benchmarks/accuracy/fashionmnist/README.md   # and the README's table
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import LONG, PARTS, TRANSPORT, available_methods, cells_of, read_rows, runnable  # noqa: E402

from edgetrgl.bench.pareto import pareto_front  # noqa: E402
from edgetrgl.plots import mean_ci95, new_figure  # noqa: E402

GROUP = ("model", "fraction", "regime", "K", "method", "recipe", "epochs", "test_images")  # a cell, all seeds
SETTING = ("model", "fraction", "recipe")  # one chart panel: points that differ only in method, K, regime


def fmt(values: list[float]) -> str:
    """'mean ± half-width' in percent; one value alone has no interval."""
    if not values:
        return "—"
    mean, half = mean_ci95([100 * v for v in values])
    return f"{mean:.1f}" + ("" if math.isnan(half) else f" ± {half:.1f}")


def mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:.0f}"


def key_of(row: dict, fields=GROUP) -> tuple:
    return tuple(row.get(f) for f in fields)


def describe(key: tuple) -> str:
    g = dict(zip(GROUP, key))
    data = "full set" if g["fraction"] == 1.0 else f"{100 * g['fraction']:g}%"
    epochs = g["epochs"] * (LONG if g["method"] == "e2e-long" else 1)  # per module; e2e and parallel: in total
    return f"{g['model']}, {data}, {g['regime']}, K={g['K']}, {g['recipe']} recipe, {epochs} ep."


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[key_of(r)].append(r)
    return groups


def summarise(key: tuple, runs: list[dict]) -> dict:
    return {**dict(zip(GROUP, key)), "seeds": sorted(r["seed"] for r in runs),
            "last": [r["last"] for r in runs], "best": [r["best"] for r in runs],
            "best_module": [r["best_module"] for r in runs],
            "estimated_peak_bytes": next((r["estimated_peak_bytes"] for r in runs if r.get("estimated_peak_bytes")), None),
            "epochs_run": runs[0]["config"]["epochs"], "wall_time_s": [r["wall_time_s"] for r in runs],
            "train_size": runs[0]["train_size"], "test_size": runs[0].get("test_size")}


def part_table(part: str, groups: dict[tuple, list[dict]], methods: set[str]) -> str:
    """One markdown table per part: every cell of its grid, run or not."""
    seeds, epochs, what, _ = PARTS[part]
    planned: dict[tuple, list[dict]] = {}
    for c in cells_of([part], None, None):
        planned.setdefault(key_of(c), []).append(c)
    test = planned and next(iter(planned.values()))[0].get("test_images")
    lines = [f"### {part}: {what}\n", f"{seeds} seeds planned, {epochs} epoch(s) per module (e2e and parallel: in "
             f"total); test images: {test or 'all 10,000'}.\n",
             "| setting | method | seeds | last module | best module | best module # | est. peak MiB | s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for key, cells in planned.items():
        runs = groups.get(key, [])
        setting, method = describe(key), key[4]
        if not runs:
            why = "not run yet" + ("" if runnable(cells[0], methods) else " (method not in this checkout)")
            lines.append(f"| {setting} | {method} | 0/{len(cells)} | {why} | | | | |")
            continue
        s = summarise(key, runs)
        modules = ",".join(str(m) for m in sorted(set(s["best_module"])))
        wall = sorted(s["wall_time_s"])[len(s["wall_time_s"]) // 2]
        lines.append(f"| {setting} | {method} | {len(runs)}/{len(cells)} | {fmt(s['last'])} | {fmt(s['best'])} | "
                     f"{modules} | {mib(s['estimated_peak_bytes'])} | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def other_table(groups: dict[tuple, list[dict]], planned: set[tuple]) -> str:
    """Cells outside the grid of PARTS (an earlier protocol, paper_scale.py's runs), so no run is hidden."""
    extra = [k for k in groups if k not in planned]
    if not extra:
        return ""
    lines = ["### Other runs (outside the current grid)\n",
             "| setting | method | epochs | test images | seeds | last module | best module | est. peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(extra, key=str):
        s = summarise(key, groups[key])
        lines.append(f"| {describe(key)} | {s['method']} | {s['epochs_run']} | {s['test_images'] or 'all'} | "
                     f"{len(s['seeds'])} | {fmt(s['last'])} | {fmt(s['best'])} | {mib(s['estimated_peak_bytes'])} |")
    return "\n".join(lines) + "\n"


def paired(groups: dict[tuple, list[dict]], a: tuple, b: tuple, field: str = "last") -> str:
    """Mean of a - b in points over the seeds both cells have, with its 95% interval."""
    av = {r["seed"]: r[field] for r in groups.get(a, [])}
    bv = {r["seed"]: r[field] for r in groups.get(b, [])}
    seeds = sorted(set(av) & set(bv))
    if not seeds:
        return "—"
    return fmt([av[s] - bv[s] for s in seeds]) + f" ({len(seeds)} seeds)"


def claim_table(groups: dict[tuple, list[dict]]) -> str:
    """The paper's small-data claim (its Table 13: TRGL > VanGL at 2%, close to e2e), paired by seed."""
    lines = ["### The small-data claim, paired by seed (points, last module)\n",
             "| setting | TRGL (tau 1) − VanGL | TRGL (tau 10) − VanGL | TRGL (tau 1) − e2e | VanGL − e2e |",
             "|---|---|---|---|---|"]
    settings = sorted({k for k in groups if k[4] == "vangl"}, key=str)
    for key in settings:
        def at(method, reg=None, kk=None, key=key):
            g = {**dict(zip(GROUP, key)), "method": method}
            if reg:
                g.update(regime=reg, K=kk)
            return tuple(g[f] for f in GROUP)
        e2e = at("e2e", "e2e", 1)
        g = dict(zip(GROUP, key))
        if e2e not in groups and g["epochs"] % LONG == 0:  # e2e trained LONG times its part's epochs, the same compute
            e2e = tuple({**g, "method": "e2e-long", "regime": "e2e", "K": 1, "epochs": g["epochs"] // LONG}[f] for f in GROUP)
        lines.append(f"| {describe(at('vangl'))} | {paired(groups, at('trgl-tau1'), at('vangl'))} | "
                     f"{paired(groups, at('trgl'), at('vangl'))} | {paired(groups, at('trgl-tau1'), e2e)} | "
                     f"{paired(groups, at('vangl'), e2e)} |")
    return "\n".join(lines) + "\n"


def transport_table(groups: dict[tuple, list[dict]]) -> str:
    """What the transport term adds on top of each local objective, paired by seed; empty without runs."""
    with_term = sorted((k for k in groups if str(k[4]).endswith(TRANSPORT)), key=str)
    if not with_term:
        return ""
    lines = ["### The transport term on top of a local objective, paired by seed (points, last module)\n",
             "| setting | objective | objective alone | with transport | with − alone |", "|---|---|---|---|---|"]
    for key in with_term:
        alone = tuple(key[4].removesuffix(TRANSPORT) if f == "method" else v for f, v in zip(GROUP, key))
        lines.append(f"| {describe(key)} | {alone[4]} | {fmt([r['last'] for r in groups.get(alone, [])])} | "
                     f"{fmt([r['last'] for r in groups[key]])} | {paired(groups, key, alone)} |")
    return "\n".join(lines) + "\n"


def measured_table(folder: Path) -> str:
    """The planner's estimate of one training step beside its measurement, for the study's models and
    shape (``measure_memory.sh`` writes ``folder/<model>_k<K>.json`` and ``.estimate.json``); empty
    when nothing was measured."""
    benches = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".estimate.json")) if folder.is_dir() else []
    if not benches:
        return ""
    lines = ["### Estimate against measurement (one training step, batch 128, 1x28x28)\n",
             "Written from `benchmarks/accuracy/fashionmnist/measure_memory.sh` (`edgetrgl bench`, a fresh process "
             "per method): the planner's fake-tensor estimate (`--estimate`, the study's memory column), "
             "MemTracker's measured tensor peak, and the process's RSS above its baseline (runtime and allocator "
             "included).\n",
             "| model | K | method | est. peak MiB | measured tensor peak MiB | est. / measured | measured RSS Δ MiB |",
             "|---|---|---|---|---|---|---|"]
    seen = set()
    for path in benches:
        bench = json.loads(path.read_text())
        estimate_path = path.with_suffix(".estimate.json")
        estimated = ({r["method"]: r["peak_bytes"] for r in json.loads(estimate_path.read_text())["results"]}
                     if estimate_path.exists() else {})
        setting = bench["setting"]
        k = "block" if setting["modules"] == setting.get("num_blocks") else str(setting["modules"])
        for r in bench["results"]:
            shown_k = "1" if r["method"] == "e2e" else k
            if (setting["model"], shown_k, r["method"]) in seen:  # e2e is in every file of a model
                continue
            seen.add((setting["model"], shown_k, r["method"]))
            est = estimated.get(r["method"])
            ratio = f"{est / r['peak_bytes']:.2f}" if est else "—"
            lines.append(f"| {setting['model']} | {shown_k} | {r['method']} | {mib(est)} | {mib(r['peak_bytes'])} | "
                         f"{ratio} | {mib(r.get('peak_rss_bytes'))} |")
    return "\n".join(lines) + "\n"


METHOD_ORDER = ("e2e", "e2e-long", "vangl", "trgl-tau1", "trgl", "infopro", "infopro-c", "dgl", "predsim")
MARKERS = {("e2e", "1"): "*", ("sequential", "4"): "o", ("sequential", "block"): "s", ("parallel", "4"): "^",
           ("parallel", "block"): "v"}


def shape_of(s: dict) -> str:
    return "backprop (K=1)" if s["regime"] == "e2e" else f"{s['regime'][:3]} K={s['K']}"


def chart(summaries: list[dict], path: Path) -> Path | None:
    """Accuracy (last module, mean over seeds) against the estimated peak, one panel per setting:
    colour is the method, the marker the regime and K, the Pareto front (the best accuracy for each
    memory) a step line through ringed points. The y range follows the means, so one wide interval
    (two seeds) does not flatten the rest."""
    panels: dict[tuple, list[dict]] = defaultdict(list)
    for s in summaries:
        if s["estimated_peak_bytes"]:
            panels[key_of(s, SETTING)].append(s)
    panels = {k: v for k, v in panels.items() if len(v) >= 2}
    if not panels:
        return None
    cols, rows = min(3, len(panels)), math.ceil(len(panels) / 3)
    fig = new_figure(figsize=(6.4 * cols, 4.6 * rows + 0.6), dpi=100)
    colour = {m: f"C{i}" for i, m in enumerate(METHOD_ORDER)}
    legend: dict[str, object] = {}
    for i, (setting, points) in enumerate(sorted(panels.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])), 1):
        ax = fig.add_subplot(rows, cols, i)
        xs = [p["estimated_peak_bytes"] / 2**20 for p in points]
        ys = [mean_ci95([100 * v for v in p["last"]]) for p in points]
        front = set(pareto_front([(x, -y[0]) for x, y in zip(xs, ys)]))
        for j, (p, x, (y, half)) in enumerate(zip(points, xs, ys)):
            marker = MARKERS.get((p["regime"], str(p["K"])), "D")
            base, transport = p["method"].removesuffix(TRANSPORT), p["method"].endswith(TRANSPORT)
            c = colour.get(base, "k")  # an objective + transport: its colour, hollow
            ax.errorbar(x, y, yerr=0 if math.isnan(half) else half, fmt="none", ecolor=c, alpha=0.5, capsize=2)
            ax.scatter([x], [y], marker=marker, s=70 if j in front else 40, facecolors="white" if transport else c,
                       edgecolors="k" if j in front else c, linewidths=1.2, zorder=3)
            legend.setdefault(base, ax.scatter([], [], marker="o", color=c))
            if transport:
                legend.setdefault("hollow: + transport", ax.scatter([], [], marker="o", facecolors="white",
                                                                   edgecolors="k"))
            legend.setdefault(shape_of(p), ax.scatter([], [], marker=marker, facecolors="none", edgecolors="k"))
        order = sorted(front, key=lambda j: xs[j])
        ax.step([xs[j] for j in order], [ys[j][0] for j in order], where="post", color="k", alpha=0.4)
        means = [y for y, _ in ys]
        ax.set_ylim(min(means) - 3, max(means) + 3)
        model, fraction, recipe = setting
        ax.set_title(f"{model}, {'full set' if fraction == 1.0 else f'{100 * fraction:g}% of the data'}, {recipe}")
        ax.set_xscale("log")
        ax.set_xlabel("planner's estimated peak of one step (MiB, log)")
        ax.set_ylabel("test accuracy, last module (%)")
        ax.grid(alpha=0.3)
    rank = {name: i for i, name in enumerate(METHOD_ORDER + tuple(shape_of({"regime": r, "K": k}) for r, k in MARKERS))}
    legend = dict(sorted(legend.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    legend["front: best accuracy for its memory (ringed)"] = fig.axes[0].plot([], [], color="k", alpha=0.4)[0]
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=math.ceil(len(legend) / 2), fontsize=8)
    fig.suptitle("Fashion-MNIST: accuracy against memory (mean ± 95% interval over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.6 / (4.6 * rows + 0.6), 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


BEGIN, END = "<!-- fashionmnist-table:begin -->", "<!-- fashionmnist-table:end -->"


def readme_block(groups: dict[tuple, list[dict]], methods: set[str], n_rows: int, transport: str = "",
                 measured: str = "") -> str:
    """The README's Fashion-MNIST table: the claim, then every part that has a finished run."""
    parts = [part_table(p, groups, methods).replace("### ", "#### ", 1) for p in PARTS
             if any(key_of(c) in groups for c in cells_of([p], None, None))]
    return "\n".join([BEGIN, f"_Written by `python benchmarks/accuracy/fashionmnist/report.py --readme benchmarks/accuracy/fashionmnist/README.md` "
                      f"from {n_rows} runs; all tables: benchmarks/accuracy/fashionmnist/results/tables.md._\n",
                      claim_table(groups).replace("### ", "#### ", 1),
                      *[t.replace("### ", "#### ", 1) for t in (transport,) if t], *parts,
                      *[t.replace("### ", "#### ", 1) for t in (measured,) if t], END])


def write_readme(path: Path, block: str) -> None:
    """Replace the text between the markers in ``path`` (they must be there: no silent append)."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder of runs.jsonl")
    parser.add_argument("--chart", type=Path, default=None, help="PNG path (default: <results>/../accuracy_memory.png)")
    parser.add_argument("--readme", type=Path, help="also rewrite this file's Fashion-MNIST table (between its markers)")
    args = parser.parse_args(argv)
    rows = read_rows(args.results / "runs.jsonl")
    groups, methods = group_rows(rows), available_methods()
    summaries = [summarise(k, v) for k, v in groups.items()]
    sessions = read_rows(args.results / "sessions.jsonl")
    machine = sessions[-1]["machine"] if sessions else {}
    out = ["# Fashion-MNIST accuracy study: tables\n",
           "Written by `python benchmarks/accuracy/fashionmnist/report.py` from `results/runs.jsonl` "
           f"({len(rows)} runs). Accuracies in %, mean ± 95% interval over seeds (n seeds: the \"seeds\" column), on "
           "Fashion-MNIST's test images: all 10,000 for the full-set parts, a fixed balanced 2,000 (200 per class, "
           "the same for every seed) for the small-data parts. \"est. peak\": the planner's fake-tensor estimate "
           "of one training step's peak (tensors only, the worst module).\n",
           f"Machine: {json.dumps(machine)}\n", claim_table(groups), transport := transport_table(groups)]
    out += [part_table(part, groups, methods) for part in PARTS]
    out.append(other_table(groups, {key_of(c) for c in cells_of(list(PARTS), None, None)}))  # protocol changes
    measured = measured_table(args.results / "measured")
    out.append(measured)
    (args.results / "tables.md").write_text("\n".join(out))
    (args.results / "summary.json").write_text(json.dumps(summaries, indent=1))
    if args.readme:
        write_readme(args.readme, readme_block(groups, methods, len(rows), transport, measured))
    planned = {key_of(c) for c in cells_of(list(PARTS), None, None)}
    png = chart([s for s in summaries if key_of(s) in planned], args.chart or args.results.parent / "accuracy_memory.png")
    print(f"{len(rows)} runs -> {args.results / 'tables.md'}" + (f", {png}" if png else " (no chart: too few points)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
