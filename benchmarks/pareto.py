"""Memory-time charts of the frontier a user faces without edgetrgl: every method a point (peak,
time per sample), with gradient accumulation (``+mbN``) on every method, the Pareto front marked,
and each point labelled with its accuracy cost from our Fashion-MNIST study
(benchmarks/_accuracy_cost.py). A named run prints its table; with ``--record`` it writes
results/pareto-<name>.{md,json,png} (``--results DIR``: there).

    python benchmarks/pareto.py --run mb-resnet110-estimate --record   # fake tensors, minutes
    python benchmarks/pareto.py --run mb-resnet20-measured --record    # a fresh process per method, 1 thread
    python benchmarks/pareto.py --run mb-resnet20-measured --render-only --record   # redraw from its JSON, costs refreshed

The earlier grid (ResNet-56, ResNet-110, vit_tiny, ResNet-18 at K = 4 and 8 against torch's
checkpointing: results/pareto.md) was retired with its results recorded; see results/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _accuracy_cost import SOURCE_TEXT, accuracy_costs  # noqa: E402
from _common import Contention, add_output_args, mib, output_folder, results_text, table, write_results  # noqa: E402
from rich.console import Console  # noqa: E402

from edgetrgl.bench import BenchSetting, run_bench, write_plot  # noqa: E402

MB_METHODS = ["e2e", "checkpoint", "e2e+mb8", "checkpoint+mb8", "sequential-trgl", "sequential-trgl+ckpt",
              "sequential-trgl+mb8", "sequential-trgl+ckpt+mb8"]
# name -> (setting, estimate?, what it stands for)
NAMED = {
    "mb-resnet110-estimate": (dict(model="resnet110", image_size=96, batch_size=64, modules=8, split="balanced",
                                   cache_samples=70_000), True,
                              "the paper's ResNet-110 at 96x96, batch 64, K=8 balanced; the cache as Fashion-MNIST's 70,000 images"),
    "mb-resnet20-measured": (dict(model="resnet20", image_size=28, in_channels=1, batch_size=128, modules=4,
                                  cache_samples=70_000), False,
                             "ResNet-20 on Fashion-MNIST's shape (1x28x28, 70,000 images cached: train and test), batch 128, K=4"),
}

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", choices=list(NAMED), required=True, help="the named run (see above)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method (median); default 3")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--render-only", action="store_true", help="redraw the run's recorded chart from its JSON; no runs")
    add_output_args(parser)
    args = parser.parse_args()
    if args.render_only:
        if output_folder(args) is None:
            parser.error("--render-only rewrites a recorded chart: add --record (or --results DIR holding its JSON)")
        return render_named(args.run, output_folder(args))
    return named_run(args.run, output_folder(args), args.steps, args.threads)


def named_run(name: str, folder: Path | None, steps: int, threads: int) -> int:
    """One of :data:`NAMED`: compare :data:`MB_METHODS`, print the table, write it into ``folder`` (None: nowhere)."""
    values, estimate, about = NAMED[name]
    console = Console(stderr=True)
    started = time.perf_counter()
    setting = BenchSetting(**values, steps=steps, warmup=1)
    gauge = Contention()
    report = run_bench(setting, MB_METHODS, estimate=estimate, console=console, threads=None if estimate else threads)
    costs = _label(report["results"])
    run = {"name": name, "about": about, "mode": report["mode"], "setting": report["setting"], "notes": report["notes"],
           "accuracy_from": SOURCE_TEXT, "pareto": report["pareto"], "results": report["results"],
           "other_processes_busy_cores": None if estimate else gauge.busy_cores(),
           "threads": None if estimate else threads, "elapsed_s": round(time.perf_counter() - started, 1)}
    text = mb_markdown(run)
    print(text)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        png = folder / f"pareto-{name}.png"
        write_plot(report, png, notes={m: c.short for m, c in costs.items()})
        json_path, md_path = write_results(f"pareto-{name}", {**run, "png": png.name},
                                           text + f"\nChart: `results/{png.name}`\n", folder)
        console.print(f"wrote {json_path}, {md_path} and {png}")
    return 0


def _label(results: list[dict[str, Any]]) -> dict:
    """Each result's accuracy cost from the study as it stands (see _accuracy_cost.py), in place."""
    costs = accuracy_costs([r["method"] for r in results])
    for r in results:
        cost = costs[r["method"]]
        r["accuracy_cost"] = {"label": cost.label, "study_method": cost.study_method, "accuracy": cost.accuracy,
                              "delta_vs_e2e_points": cost.delta_vs_e2e, "seeds": cost.seeds, "source": cost.source}
    return costs


def render_named(name: str, folder: Path) -> int:
    """Redraw ``folder``/pareto-<name>.png from its JSON there (no runs), with the accuracy costs the
    study gives now; the table's other figures, command, machine and date stay as recorded."""
    import json

    json_path = folder / f"pareto-{name}.json"
    run = json.loads(json_path.read_text())
    costs = _label(run["results"])
    run["accuracy_from"] = SOURCE_TEXT
    write_plot(run, folder / run["png"], notes={m: c.short for m, c in costs.items()})
    json_path.write_text(json.dumps(run, indent=2) + "\n")
    markdown = mb_markdown(run) + f"\nChart: `results/{run['png']}` (accuracy costs as the study gave them on " \
        f"{time.strftime('%Y-%m-%d')})\n"
    (folder / f"pareto-{name}.md").write_text(results_text(f"pareto-{name}", run, markdown))
    return 0


def mb_markdown(run: dict[str, Any]) -> str:
    """A named run's table: peak, cache, time (or work) per sample, front, accuracy cost."""
    timed = run["mode"] == "measured"
    s = run["setting"]
    lines = [f"## {run['name']}: {run['about']}, {run['mode']}\n\n",
             f"{s['model']} {s['in_channels']}x{s['image_size']}x{s['image_size']}, batch {s['batch_size']}, "
             f"K={s['modules']} ({s['split']}); accuracy cost from our {run['accuracy_from']}.",
             "" if not timed else f" {run['threads']} torch thread per process; other processes kept "
                                  f"{run['other_processes_busy_cores']} cores busy.", "\n\n"]
    header = ["method", "tensor peak" if timed else "estimated peak", "vs e2e", "host cache",
              "RSS peak Δ (with cache)" if timed else "step + cache", "time/sample" if timed else "GFLOP/sample",
              "vs e2e time" if timed else "", "front", "accuracy cost"]
    rows = []
    for r in run["results"]:
        ratio = "n/a" if r.get("savings_vs_e2e") is None else f"{1 - r['savings_vs_e2e']:.3f}x"
        if timed:
            y = "n/a" if r.get("time_per_sample_s") is None else f"{r['time_per_sample_s'] * 1e3:.2f} ms"
            y2 = "n/a" if r.get("time_vs_e2e") is None else f"{r['time_vs_e2e']:.2f}x"
            unified = mib(r.get("peak_rss_bytes"))
        else:
            y, y2, unified = _gflop(r.get("flops_per_sample")), "", mib(r.get("unified_peak_bytes"))
        rows.append([r["method"], _mib1(r.get("peak_bytes")), ratio, mib(r.get("cache_bytes")), unified, y, y2,
                     "*" if r.get("on_pareto_front") else "", r["accuracy_cost"]["label"]])
    if not timed:  # no time ratio column for an estimate
        header, rows = header[:6] + header[7:], [row[:6] + row[7:] for row in rows]
    lines.append(table(header, rows))
    lines += ["\n"] + [f"- {note}\n" for note in run["notes"]]
    return "".join(lines)


def _mib1(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.1f} MiB"


def _gflop(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.3g}"


if __name__ == "__main__":
    sys.exit(main())
