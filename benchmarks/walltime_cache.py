"""Wall time of sequential training with a host cache, a disk cache, or recomputing the prefix, vs e2e.

The default `edgetrgl train` setting: ResNet-20 on the bundled mnist5k, K = 4, 2 epochs (per module
for sequential, in total for e2e), augmentation on (``--no-augment``: the cache and the recomputed
prefix then see the same inputs), batch 128, CPU. Runs are interleaved (e2e, host, disk, none, e2e,
...) so that drift in the machine's load hits every variant alike; the median of the repeats is
reported, with where the time went (``phases_s`` of summary.json: steps, data, evaluation, cache
fill, checkpoints). Targets (issue 11): host-cached sequential <= 1.05x e2e; disk cache <= 1.10x host.

    python benchmarks/walltime_cache.py --threads 0   # about 5 minutes on 2 quiet CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Contention, table, wait_for_quiet, add_output_args, output_folder, write_results  # noqa: E402

import torch  # noqa: E402

import edgetrgl  # noqa: E402
from edgetrgl import TrainConfig  # noqa: E402

VARIANTS = [("e2e", "e2e", "auto"), ("sequential, host cache", "sequential", "host"),
            ("sequential, disk cache", "sequential", "disk"), ("sequential, no cache (recompute prefix)", "sequential", "none")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--modules", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared 2-core machine one thread avoids OpenMP "
                             "spin-wait slowdowns when another process holds the cores; 0: torch's choice)")
    parser.add_argument("--max-wait-s", type=float, default=120.0, help="wait this long for a quiet machine first")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="augmentation off")
    add_output_args(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_level = wait_for_quiet(args.max_wait_s)
    gauge, started = Contention(), time.perf_counter()
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in VARIANTS}
    for repeat in range(args.repeats):
        for name, regime, cache in VARIANTS:
            with tempfile.TemporaryDirectory(prefix="edgetrgl-bench-cache-") as cache_dir:
                cfg = TrainConfig(model=args.model, dataset="mnist5k", modules=args.modules, regime=regime, cache=cache,
                                  epochs=args.epochs, batch_size=args.batch_size, augment=args.augment, device="cpu",
                                  out="", cache_dir=cache_dir, seed=0)
                run_gauge, t0 = Contention(), time.perf_counter()
                result = edgetrgl.train(cfg, quiet=True)
                total = time.perf_counter() - t0
            runs[name].append({"wall_time_s": result.wall_time_s, "total_s": total, "cache": result.extra.get("cache"),
                               "data_mode": result.extra.get("data_mode"),
                               "module_time_s": [round(m["time_s"], 3) for m in result.modules],
                               "phases_s": result.extra["phases_s"],
                               "test_accuracy": [m["test_accuracy"] for m in result.modules],
                               "other_busy_cores": run_gauge.busy_cores()})
            print(f"repeat {repeat + 1}: {name:<40} {result.wall_time_s:6.1f} s "
                  f"(others busy {runs[name][-1]['other_busy_cores']} cores)", file=sys.stderr)
    medians = {name: statistics.median(r["wall_time_s"] for r in rs) for name, rs in runs.items()}
    e2e, host, disk = medians["e2e"], medians["sequential, host cache"], medians["sequential, disk cache"]
    summary = {name: {"median_wall_time_s": round(t, 3), "ratio_to_e2e": round(t / e2e, 3)} for name, t in medians.items()}
    for name, rs in runs.items():
        summary[name]["median_phases_s"] = {phase: round(statistics.median(r["phases_s"][phase] for r in rs), 3)
                                            for phase in rs[0]["phases_s"]}
    targets = {"host cache <= 1.05x e2e": {"value": round(host / e2e, 3), "met": host / e2e <= 1.05},
               "disk cache <= 1.10x host cache": {"value": round(disk / host, 3), "met": disk / host <= 1.10}}
    payload = {"setting": {"model": args.model, "dataset": "mnist5k", "modules": args.modules, "epochs": args.epochs,
                           "batch_size": args.batch_size, "augment": args.augment, "device": "cpu", "repeats": args.repeats,
                           "torch_threads": torch.get_num_threads(),
                           "timed": "edgetrgl.train(...).wall_time_s: training and per-module test evaluation, "
                                    "not data loading or network build"},
               "other_processes_busy_cores": {"before": quiet_level, "during": gauge.busy_cores()},
               "summary": summary, "targets": targets, "runs": runs, "runtime_s": round(time.perf_counter() - started, 1)}
    write_results("walltime_cache", payload, _markdown(payload), output_folder(args))
    return 0


def _markdown(payload: dict) -> str:
    s = payload["setting"]
    rows = []
    for name, values in payload["summary"].items():
        first = payload["runs"][name][0]
        rows.append([name, f"{values['median_wall_time_s']:.1f} s",
                     " / ".join(f"{r['wall_time_s']:.1f}" for r in payload["runs"][name]), f"{values['ratio_to_e2e']:.2f}x",
                     f"{100 * max(first['test_accuracy']):.1f}%", first["data_mode"]])
    targets = [[name, f"{t['value']:.2f}x", "met" if t["met"] else "NOT met"] for name, t in payload["targets"].items()]
    phase_names = list(next(iter(payload["summary"].values()))["median_phases_s"])
    phases = [[name, *(f"{values['median_phases_s'][p]:.2f}" for p in phase_names)]
              for name, values in payload["summary"].items()]
    return (f"{s['model']}, K={s['modules']}, mnist5k (4,000 train / 1,000 test, 1x28x28), {s['epochs']} epochs "
            f"(per module for sequential, in total for e2e), batch {s['batch_size']}, augmentation "
            f"{'on' if s['augment'] else 'off'}, CPU; "
            f"median of {s['repeats']} interleaved repeats. Timed: {s['timed']}. Other processes kept "
            f"{payload['other_processes_busy_cores']['during']} cores busy on average during the run; torch threads: "
            f"{s['torch_threads']}.\n\n"
            + table(["variant", "median wall time", "repeats (s)", "vs e2e", "best module test acc.", "data"], rows)
            + "\nWhere the time went (median seconds per phase, summary.json's `phases_s`):\n\n"
            + table(["variant", *phase_names], phases)
            + "\n" + table(["target", "value", "result"], targets))


if __name__ == "__main__":
    sys.exit(main())
