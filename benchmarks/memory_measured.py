"""Measured on this machine's CPU: tensor peak (MemTracker) vs the fake-tensor estimate, and process RSS.

ResNet-56, 3x32x32, batch 64, K = 4, equal-depth and memory-balanced splits. Every method runs in a
fresh process (``edgetrgl bench``'s worker); the estimate is the same plan under fake tensors.
Target: measured tensor peak within 10% of the estimate.

    python benchmarks/memory_measured.py        # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Contention, mib, table, wait_for_quiet, add_output_args, output_folder, write_results  # noqa: E402
from rich.console import Console  # noqa: E402

from edgetrgl.bench import BenchSetting, parse_methods, run_bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--modules", type=int, default=4)
    parser.add_argument("--splits", default="equal,balanced")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per worker (default 1: on a shared 2-core machine one thread avoids "
                             "OpenMP spin-wait slowdowns when another process holds the cores; 0: torch's choice)")
    parser.add_argument("--max-wait-s", type=float, default=120.0, help="wait this long for a quiet machine first")
    add_output_args(parser)
    args = parser.parse_args()
    console = Console(stderr=True)
    started = time.perf_counter()
    quiet_level = wait_for_quiet(args.max_wait_s)
    gauge = Contention()
    runs = []
    for split in args.splits.split(","):
        setting = BenchSetting(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                               modules=args.modules, split=split, steps=args.steps, warmup=1)
        methods = parse_methods("e2e,checkpoint,offload")
        measured = run_bench(setting, methods, console=console, threads=args.threads)
        estimated = run_bench(setting, methods, estimate=True, console=console)
        rows = []
        for m, e in zip(measured["results"], estimated["results"]):
            # offload: the estimate is the accelerator-resident part, the CPU measurement everything
            comparable = e.get("peak_bytes") and m["method"] != "offload"
            rel = (m["peak_bytes"] - e["peak_bytes"]) / e["peak_bytes"] if comparable else None
            rows.append({"method": m["method"], "measured_peak_bytes": m["peak_bytes"],
                         "estimated_peak_bytes": e.get("peak_bytes"), "measured_vs_estimate": rel,
                         "within_10_percent": None if rel is None else abs(rel) <= 0.10,
                         "peak_rss_bytes": m["peak_rss_bytes"], "savings_vs_e2e": m["savings_vs_e2e"],
                         "rss_savings_vs_e2e": m.get("rss_savings_vs_e2e"), "samples_per_s": m["samples_per_s"],
                         "time_vs_e2e": m["time_vs_e2e"], "step_times_s": m.get("step_times_s")})
        runs.append({"split": split, "block_ranges": [list(r) for r in measured["setting"]["block_ranges"]], "rows": rows,
                     "notes": measured["notes"], "measured_report": measured})
    busy = gauge.busy_cores()
    payload = {"setting": {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
                           "modules": args.modules, "steps": args.steps, "warmup": 1, "device": "cpu",
                           "threads": args.threads or "torch default"},
               "other_processes_busy_cores": {"before": quiet_level, "during": busy},
               "runs": runs, "runtime_s": round(time.perf_counter() - started, 1)}
    write_results("memory_measured", payload, _markdown(payload), output_folder(args))
    return 0


def _markdown(payload: dict) -> str:
    s = payload["setting"]
    out = [f"{s['model']}, 3x{s['image_size']}x{s['image_size']}, batch {s['batch_size']}, K={s['modules']}, CPU, "
           f"fp32, SGD momentum 0.9; each method in a fresh process; {s['steps']} timed steps after 1 warm-up "
           f"(median); torch threads: {s['threads']}. Other processes kept "
           f"{payload['other_processes_busy_cores']['during']} cores busy on average during the run.\n"]
    header = ["method", "measured tensor peak", "estimate", "measured vs estimate", "savings vs e2e", "RSS peak Δ",
              "RSS savings", "samples/s", "time/sample vs e2e"]
    for run in payload["runs"]:
        out.append(f"\n## {run['split']} split, blocks per module {run['block_ranges']}\n")
        body = [[r["method"], mib(r["measured_peak_bytes"]), mib(r["estimated_peak_bytes"]),
                 "n/a" if r["measured_vs_estimate"] is None else f"{100 * r['measured_vs_estimate']:+.1f}%",
                 _pct(r["savings_vs_e2e"]), mib(r["peak_rss_bytes"]), _pct(r["rss_savings_vs_e2e"]),
                 f"{r['samples_per_s']:.0f}", f"{r['time_vs_e2e']:.2f}x"] for r in run["rows"]]
        out.append(table(header, body))
        out.extend(f"- {note}" for note in run["notes"])
        out.append("- offload's estimate is the accelerator-resident peak; on this CPU device the measured step "
                   "keeps everything in the same memory, so the two differ by design")
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{round(100 * value)}%"  # round(): no "-0%"


if __name__ == "__main__":
    sys.exit(main())
