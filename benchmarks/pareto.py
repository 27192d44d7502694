"""Memory-time charts: every method a point (tensor peak, time per sample), the Pareto front marked.

ResNet-56 (3x32x32), ResNet-110 at 3x96x96, vit_tiny (3x32x32) and torchvision ResNet-18 (3x32x32)
at K = 4 and 8, measured on this machine (each method in a fresh process, ``edgetrgl bench``'s
worker, one torch thread) with small batches, and estimated (fake tensors) at the same setting;
then ResNet-110 at the paper's batch 64, estimated only (a measured step takes minutes on a CPU).
Issue 11's target, per model and K: does one of edgetrgl's methods have a lower peak than torch's
per-block checkpointing and take at most its time per sample?

    python benchmarks/pareto.py                     # about 20 minutes on 2 shared CPU cores
    python benchmarks/pareto.py --models resnet56 --ks 4 --no-paper    # one chart

Named runs (``--run NAME``): the frontier a user faces without edgetrgl, gradient accumulation
(``+mbN``) on every method, each point labelled with its accuracy cost from our Fashion-MNIST study
(benchmarks/_accuracy_cost.py). They print their table; with ``--record`` they write
results/pareto-<name>.{md,json,png}.

    python benchmarks/pareto.py --run mb-resnet110-estimate --record   # fake tensors, minutes
    python benchmarks/pareto.py --run mb-resnet20-measured --record    # a fresh process per method, 1 thread
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _accuracy_cost import PART_TEXT, accuracy_costs  # noqa: E402
from _common import RESULTS, Contention, add_output_args, mib, output_folder, table, write_results  # noqa: E402
from rich.console import Console  # noqa: E402

from edgetrgl.bench import BenchSetting, run_bench, write_plot  # noqa: E402

# name, image size, measured batch, model options, K -> options where the model needs more blocks
MODELS = {
    "resnet56": (32, 32, {}, {}),
    "resnet110": (96, 8, {}, {}),
    "vit_tiny": (32, 32, {}, {8: {"depth": 8}}),  # 6 blocks: K = 8 needs depth 8
    "resnet18": (32, 16, {}, {}),
}
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
METHODS = ["e2e", "checkpoint", "checkpoint+bf16", "parallel-trgl", "sequential-trgl", "sequential-trgl+ckpt",
           "sequential-trgl+bf16", "sequential-trgl+ckpt+bf16"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ks", default="4,8")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per method (median); default 3")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--no-paper", action="store_true", help="skip ResNet-110 96x96 batch 64 (estimated)")
    parser.add_argument("--run", choices=list(NAMED), help="one named run (see above) instead of the grid")
    parser.add_argument("--render-only", action="store_true",
                        help="with --run: redraw its chart from its JSON; else rewrite pareto.md from pareto.json "
                             "(verdicts recomputed); no runs")
    add_output_args(parser)
    args = parser.parse_args()
    folder = output_folder(args)
    if args.render_only and args.run:
        return render_named(args.run)
    if args.render_only:
        if folder is None:
            parser.error("--render-only rewrites recorded results: add --record (or --results DIR)")
        return render_only(folder)
    if args.run:
        return named_run(args.run, folder, args.steps, args.threads)
    console = Console(stderr=True)
    started = time.perf_counter()
    runs = []
    for model in args.models.split(","):
        image_size, batch, options, per_k = MODELS[model]
        for k in (int(k) for k in args.ks.split(",")):
            setting = BenchSetting(model=model, image_size=image_size, batch_size=batch, modules=k, steps=args.steps,
                                   warmup=1, model_options={**options, **per_k.get(k, {})})
            console.print(f"{model} K={k} batch {batch}: measuring")
            gauge = Contention()
            measured = run_bench(setting, METHODS, console=console, threads=args.threads)
            busy = gauge.busy_cores()
            estimated = run_bench(setting, METHODS, estimate=True, console=console)
            png = Path(f"pareto-{model}-k{k}.png")
            if folder is not None:
                write_plot(measured, folder / png)
            runs.append({"model": model, "modules": k, "mode": "measured", "setting": measured["setting"],
                         "other_processes_busy_cores": busy, "png": png.name, "verdict": verdict(measured),
                         "pareto": measured["pareto"], "results": merge(measured, estimated)})
    if not args.no_paper:
        for k in (int(k) for k in args.ks.split(",")):
            setting = BenchSetting(model="resnet110", image_size=96, batch_size=64, modules=k)
            console.print(f"resnet110 K={k} batch 64: estimating")
            estimated = run_bench(setting, METHODS, estimate=True, console=console)
            png = Path(f"pareto-resnet110-b64-k{k}-estimate.png")
            if folder is not None:
                write_plot(estimated, folder / png)
            runs.append({"model": "resnet110", "modules": k, "mode": "estimate", "setting": estimated["setting"],
                         "png": png.name, "verdict": verdict(estimated), "pareto": estimated["pareto"],
                         "results": estimated["results"]})
    payload = {"methods": METHODS, "runs": runs, "elapsed_s": round(time.perf_counter() - started, 1)}
    written = write_results("pareto", payload, markdown(runs), folder)
    if written:
        console.print(f"wrote {written[0]} and {written[1]} ({payload['elapsed_s']:.0f} s)")
    return 0


def named_run(name: str, folder: Path | None, steps: int, threads: int) -> int:
    """One of :data:`NAMED`: compare :data:`MB_METHODS`, print the table, write it into ``folder`` (None: nowhere)."""
    values, estimate, about = NAMED[name]
    console = Console(stderr=True)
    started = time.perf_counter()
    setting = BenchSetting(**values, steps=steps, warmup=1)
    gauge = Contention()
    report = run_bench(setting, MB_METHODS, estimate=estimate, console=console, threads=None if estimate else threads)
    costs = accuracy_costs(MB_METHODS)
    for r in report["results"]:
        cost = costs[r["method"]]
        r["accuracy_cost"] = {"label": cost.label, "study_method": cost.study_method, "accuracy": cost.accuracy,
                              "delta_vs_e2e_points": cost.delta_vs_e2e, "seeds": cost.seeds}
    run = {"name": name, "about": about, "mode": report["mode"], "setting": report["setting"], "notes": report["notes"],
           "accuracy_from": PART_TEXT, "pareto": report["pareto"], "results": report["results"],
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


def render_named(name: str) -> int:
    """Redraw results/pareto-<name>.png from its recorded JSON (no runs)."""
    import json

    run = json.loads((RESULTS / f"pareto-{name}.json").read_text())
    costs = accuracy_costs([r["method"] for r in run["results"]])
    write_plot(run, RESULTS / run["png"], notes={m: c.short for m, c in costs.items()})
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


def render_only(folder: Path) -> int:
    """Recompute the verdicts from the stored results and rewrite the markdown (same run, same header)."""
    import json

    payload = json.loads((folder / "pareto.json").read_text())
    for run in payload["runs"]:
        run["verdict"] = verdict(run)
    (folder / "pareto.json").write_text(json.dumps(payload, indent=2) + "\n")
    md = (folder / "pareto.md").read_text()
    header = md[:md.index("## Target")]
    (folder / "pareto.md").write_text(header + markdown(payload["runs"]).rstrip() + "\n")
    return 0


def merge(measured: dict[str, Any], estimated: dict[str, Any]) -> list[dict[str, Any]]:
    """Measured records with the estimate's peak and FLOPs beside them."""
    by_method = {r["method"]: r for r in estimated["results"]}
    keep = ("method", "peak_bytes", "time_per_sample_s", "samples_per_s", "peak_rss_bytes", "savings_vs_e2e",
            "time_vs_e2e", "on_pareto_front", "step_times_s", "peak_module")
    return [{**{key: r.get(key) for key in keep}, "estimated_peak_bytes": by_method[r["method"]].get("peak_bytes"),
             "flops_per_sample": by_method[r["method"]].get("flops_per_sample")} for r in measured["results"]]


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Issue 11's target against ``checkpoint`` (and, beside it, ``checkpoint+bf16``).

    ``met``: one of ours has a strictly lower peak and at most the time (``y``) per sample; ``best``
    is the fastest such method. Where none is, ``smallest`` is our smallest method and
    ``fastest_smaller`` our fastest method below checkpoint's peak, each with its time ratio.
    ``checkpoint (fp32 only)`` compares ours without ``+bf16`` against fp32 checkpointing.
    """
    y = report["pareto"]["y"]
    results = [r for r in report["results"] if r.get("peak_bytes") is not None and r.get(y) is not None]
    everything = [r for r in results if r["method"] not in ("e2e", "checkpoint", "checkpoint+bf16", "offload")]
    out: dict[str, Any] = {"y": y}
    for name in ("checkpoint", "checkpoint (fp32 only)", "checkpoint+bf16"):
        ours = [r for r in everything if "fp32" not in name or "+bf16" not in r["method"]]
        ref = next((r for r in results if r["method"] == name.split(" ")[0]), None)
        if ref is None:
            continue
        smaller = [r for r in ours if r["peak_bytes"] < ref["peak_bytes"]]
        winners = [r for r in smaller if r[y] <= ref[y]]
        describe = lambda r: None if r is None else {  # noqa: E731
            "method": r["method"], "peak_vs_ref": r["peak_bytes"] / ref["peak_bytes"], "time_vs_ref": r[y] / ref[y]}
        out[name] = {
            "met": bool(winners),
            "best": describe(min(winners, key=lambda r: r[y]) if winners else None),
            "smallest": describe(min(ours, key=lambda r: r["peak_bytes"]) if ours else None),
            "fastest_smaller": describe(min(smaller, key=lambda r: r[y]) if smaller else None),
        }
    return out


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = ["## Target: a lower peak than torch checkpointing and at least as fast\n",
             "Each cell: met or not, then the method that decides it (its peak and time per sample as a "
             "ratio to the reference): the fastest of ours that is smaller, where one is at least as fast; "
             "else the fastest that is smaller.\n\n",
             table(["model", "input, batch", "K", "mode", "vs checkpoint", "vs checkpoint, fp32 only",
                    "vs checkpoint+bf16"], [_verdict_row(run) for run in runs])]
    for run in runs:
        s = run["setting"]
        timed = run["mode"] == "measured"
        title = (f"\n## {run['model']} {s['in_channels']}x{s['image_size']}x{s['image_size']}, batch {s['batch_size']}, "
                 f"K={run['modules']}{_options(s)}, {run['mode']}\n")
        header = ["method", "tensor peak" if timed else "estimated peak", "estimate", "vs e2e",
                  "time/sample" if timed else "GFLOP/sample", "GFLOP/sample", "front"]
        rows = []
        for r in run["results"]:
            y = (f"{r['time_per_sample_s'] * 1e3:.1f} ms" if timed and r.get("time_per_sample_s") is not None
                 else "n/a" if timed else _gflop(r.get("flops_per_sample")))
            rows.append([r["method"], mib(r.get("peak_bytes")), mib(r.get("estimated_peak_bytes", r.get("peak_bytes"))),
                         "n/a" if r.get("savings_vs_e2e") is None else f"{1 - r['savings_vs_e2e']:.2f}x",
                         y, _gflop(r.get("flops_per_sample")), "*" if r.get("on_pareto_front") else ""])
        if not timed:  # the estimate's own columns already say it
            header, rows = header[:2] + header[3:5] + header[6:], [row[:2] + row[3:5] + row[6:] for row in rows]
        busy = f" Other processes kept {run['other_processes_busy_cores']} cores busy." if timed else ""
        lines += [title, f"Chart: `results/{run['png']}`.{busy}\n\n", table(header, rows)]
    return "".join(lines)


def _verdict_row(run: dict[str, Any]) -> list[str]:
    s, v = run["setting"], run["verdict"]
    row = [run["model"] + _options(s), f"{s['image_size']}x{s['image_size']}, {s['batch_size']}", str(run["modules"]),
           run["mode"] + ("" if run["mode"] == "measured" else " (FLOPs for time)")]
    for name in ("checkpoint", "checkpoint (fp32 only)", "checkpoint+bf16"):
        w = v.get(name)
        if w is None:
            row.append("n/a")
            continue
        pick = w["best"] or w["fastest_smaller"] or w["smallest"]
        label = "**met**" if w["met"] else "not met"
        row.append(label + ("" if pick is None else
                            f": {pick['method']} ({pick['peak_vs_ref']:.2f}x, {pick['time_vs_ref']:.2f}x)"))
    return row


def _options(setting: dict[str, Any]) -> str:
    opts = setting.get("model_options") or {}
    return "" if not opts else " (" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")"


def _gflop(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.3g}"


if __name__ == "__main__":
    sys.exit(main())
