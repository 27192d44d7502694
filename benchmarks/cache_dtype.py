"""What the activation cache's storage dtype does to accuracy and cache size.

Trains the default setting (ResNet-20, K=4, sequential, bundled mnist5k, 2 epochs per module,
augmentation off so that only the storage differs) with the host cache stored as fp32, fp16 and
bf16, for a few seeds, and writes results/cache_dtype.{json,md}.

    .venv/bin/python benchmarks/cache_dtype.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from statistics import mean

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_output_args, output_folder  # noqa: E402

from edgetrgl import TrainConfig, train  # noqa: E402
from edgetrgl.config import format_bytes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_output_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for dtype in ("fp32", "fp16", "bf16"):
        accs, largest = [], 0
        for seed in args.seeds:
            result = train(TrainConfig(cache="host", cache_dtype=dtype, augment=False, seed=seed, device="cpu", out=""),
                           out=None, quiet=True)
            accs.append(result.last_module["test_accuracy"])
            largest = max(m.get("cache_bytes", 0) for m in result.modules)
        rows.append({"dtype": dtype, "last_module_accuracy": accs, "mean": mean(accs), "largest_cache_bytes": largest})
    lines = [f"# cache_dtype\n\nCommand: `python benchmarks/cache_dtype.py --seeds {' '.join(map(str, args.seeds))}`  ",
             f"Machine: {platform.platform()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n",
             "ResNet-20, K=4, sequential, mnist5k, 2 epochs per module, augmentation off, host cache.\n",
             "| storage | last-module test accuracy per seed | mean | largest cache |", "|---|---|---|---|"]
    for r in rows:
        per_seed = " / ".join(f"{100 * a:.1f}" for a in r["last_module_accuracy"])
        lines.append(f"| {r['dtype']} | {per_seed} | {100 * r['mean']:.2f}% | {format_bytes(r['largest_cache_bytes'])} |")
    out = output_folder(args)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cache_dtype.json").write_text(json.dumps(rows, indent=2) + "\n")
        (out / "cache_dtype.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
