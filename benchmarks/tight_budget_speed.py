"""Sequential TRGL under a tight budget against e2e with gradient accumulation, on the same data and epochs.

Under a small memory limit a user's alternative to module-wise training is ordinary backprop on
micro-batches with gradients accumulated to the batch. This times, in fresh processes and
round-robin (so a busy spell of the shared machine hits every run alike), the CLI on Fashion-MNIST
10% (ResNet-20, batch 128, 5 epochs, seed 0):

- ``e2e+mb16``: ``--regime e2e --micro-batch 16``, the baseline;
- ``sequential+mb16``: ``--regime sequential --micro-batch 16 --cache disk`` (TRGL, K=4);
- ``sequential --budget 25MB``: the planner's choice at about the same tensor peak, disk cache.

It reports the median wall time of each (the run's own ``wall_time_s``), its ratio to the baseline
(target: sequential within 1.25x), the process's CPU seconds and their ratio (with one thread, the
wall time a quiet machine would show: what to compare on a shared one), the time by phase, the tensor and process peaks and the test
accuracy of the last module.

    nice -n -10 python benchmarks/tight_budget_speed.py --repeats 3 --record   # ~30 min; ahead of other work
    python benchmarks/tight_budget_speed.py --epochs 1 --repeats 1     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))

from benchmarks._common import Contention, add_output_args, mib, output_folder, table, write_results  # noqa: E402

BASELINE = "e2e+mb16"
RUNS = {
    BASELINE: ["--regime", "e2e", "--micro-batch", "16"],
    "sequential+mb16": ["--regime", "sequential", "--micro-batch", "16", "--cache", "disk"],
    "sequential --budget 25MB": ["--regime", "sequential", "--budget", "25MB", "--cache", "disk"],
}
TARGET = 1.25  # sequential's wall time over the baseline's
PHASES = ("steps", "cache_fill", "evaluate", "checkpoint", "data", "other")


def train_once(name: str, args, work: Path) -> dict:
    out = work / name.replace(" ", "_").replace("+", "_")
    cmd = [sys.executable, "-m", "edgetrgl", "train", "--dataset", args.dataset, "--train-fraction", str(args.fraction),
           "--epochs", str(args.epochs), "--seed", "0", "--out", str(out), "--overwrite", "--quiet", *RUNS[name]]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"error: {name} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_time_s": summary["wall_time_s"], "process_cpu_s": cpu_s, "phases_s": summary.get("phases_s", {}),
            "peak_bytes": summary["peak_bytes"], "peak_rss_bytes": summary["peak_rss_bytes"],
            "micro_batch": summary["plan"]["micro_batch"], "test_accuracy": summary["last_module"]["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, round-robin (the median is reported)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fraction", type=float, default=0.1, help="--train-fraction")
    parser.add_argument("--dataset", default="fashionmnist")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS; 1: steady on a shared machine)")
    add_output_args(parser)
    args = parser.parse_args()
    folder = output_folder(args)
    gauge, runs = Contention(), {name: [] for name in RUNS}
    with tempfile.TemporaryDirectory(prefix="edgetrgl-tight-speed-") as tmp:
        for i in range(args.repeats):
            for name in RUNS:
                runs[name].append(train_once(name, args, Path(tmp)))
                r = runs[name][-1]
                print(f"[{i + 1}/{args.repeats}] {name}: {r['wall_time_s']:.1f} s", file=sys.stderr, flush=True)
    busy = gauge.busy_cores()
    median = {name: statistics.median(r["wall_time_s"] for r in rs) for name, rs in runs.items()}
    cpu = {name: statistics.median(r["process_cpu_s"] for r in rs) for name, rs in runs.items()}
    rows, records = [], []
    for name, rs in runs.items():
        ratio, cpu_ratio = median[name] / median[BASELINE], cpu[name] / cpu[BASELINE]
        phases = {p: statistics.median(r["phases_s"].get(p, 0.0) for r in rs) for p in PHASES}
        met = "" if name == BASELINE else ("yes" if ratio <= TARGET else "no")
        rows.append([name, f"{median[name]:.1f}", f"{ratio:.2f}", met, f"{cpu[name]:.0f}", f"{cpu_ratio:.2f}", rs[0]["micro_batch"],
                     ", ".join(f"{p} {v:.0f}" for p, v in phases.items() if v >= 0.5),
                     mib(rs[0]["peak_bytes"]), mib(rs[0]["peak_rss_bytes"]), f"{100 * rs[0]['test_accuracy']:.1f}"])
        records.append({"run": name, "args": RUNS[name], "median_wall_time_s": median[name], "ratio": ratio,
                        "median_process_cpu_s": cpu[name], "cpu_ratio": cpu_ratio,
                        "phases_median_s": phases, "runs": rs})
    markdown = table(["run", "median wall s", f"/ {BASELINE}", f"<= {TARGET}x", "process CPU s", f"CPU / {BASELINE}", "micro-batch", "median s by phase",
                      "tensor peak MiB", "peak RSS MiB", "test acc %"], rows)
    markdown += (f"\n{args.dataset} {100 * args.fraction:g}%, ResNet-20, batch 128, {args.epochs} epochs, seed 0, "
                 f"{args.threads} threads per run, {args.repeats} round-robin repeats. Other processes kept {busy} "
                 "cores busy on average while this ran. Wall time is what a user waits; the process's CPU seconds "
                 "(user + system, the whole process from start to exit) are the same figure unaffected by other "
                 "processes on a shared machine, with one thread.\n")
    paths = write_results("tight_budget_speed", {"runs": records, "busy_cores_others": busy, "epochs": args.epochs,
                                                  "threads": args.threads, "target": TARGET}, markdown, folder)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)


if __name__ == "__main__":
    main()
