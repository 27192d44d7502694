"""Soak test: many modules and epochs with the disk cache; host memory and open files must not grow.

Trains ResNet-56 (27 blocks) block-wise, one block per module, for several laps (multilap), so the
disk cache is written, read and deleted 27 x laps times. After every module the trainer records the
process's resident memory and open file descriptors; this script reports their trend.

    .venv/bin/python benchmarks/soak.py [--laps 2] [--width 8] [--record | --results DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_output_args, output_folder  # noqa: E402

from edgetrgl import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--laps", type=int, default=2)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--train-fraction", type=float, default=0.25)
    add_output_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(2)
    run_dir = Path(tempfile.mkdtemp(prefix="edgetrgl-soak-"))
    cfg = TrainConfig(model="resnet56", model_options={"width": args.width}, dataset="mnist5k",
                      train_fraction=args.train_fraction, modules=27, regime="multilap", laps=args.laps, epochs=1,
                      batch_size=128, cache="disk", offload="disk", device="cpu", out=str(run_dir / "run"))
    started = time.perf_counter()
    train(cfg, quiet=True)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "run" / "metrics.jsonl").read_text().splitlines()]
    modules = [r for r in records if r["event"] == "module"]
    rss = [r["rss_bytes"] for r in modules]
    fds = [r["open_files"] for r in modules]
    leftover = sorted(str(p.relative_to(run_dir)) for p in (run_dir / "run" / "cache").rglob("*")) if (run_dir / "run" / "cache").exists() else []
    shutil.rmtree(run_dir)
    per_lap = len(rss) // args.laps
    lap_peaks = [round(max(rss[i * per_lap:(i + 1) * per_lap]) / 2**20, 1) for i in range(args.laps)]
    lap_ends = [round(rss[(i + 1) * per_lap - 1] / 2**20, 1) for i in range(args.laps)]
    result = {
        "command": f"python benchmarks/soak.py --laps {args.laps} --width {args.width} --train-fraction {args.train_fraction}",
        "date": date.today().isoformat(), "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__, "modules_trained": len(modules), "wall_time_s": round(wall, 1),
        "rss_mib_per_module": [round(r / 2**20, 1) for r in rss], "open_files_per_module": fds,
        # a leak grows lap over lap; allocator noise and mapped cache pages do not
        "rss_peak_mib_per_lap": lap_peaks, "rss_end_mib_per_lap": lap_ends,
        "open_files_min_max": [min(fds), max(fds)], "cache_files_left": leftover,
    }
    out = output_folder(args)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("per_module")}, indent=2))


if __name__ == "__main__":
    main()
