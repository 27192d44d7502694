"""What ``--precision bf16`` does to the default run's accuracy (and wall time) on the CPU.

Trains the default setting (``edgetrgl train``: ResNet-20, K=4, sequential TRGL, bundled mnist5k,
2 epochs per module) in fp32 and in bf16 autocast, for a few seeds, and writes
results/precision.{json,md}. fp16 needs a GPU to be worth it and is not run here.

    .venv/bin/python benchmarks/precision.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import mean, pstdev

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, add_output_args, output_folder, write_results  # noqa: E402

from edgetrgl import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    add_output_args(parser)
    args = parser.parse_args()
    rows = []
    for precision in args.precisions:
        accs, walls = [], []
        for seed in args.seeds:
            result = train(TrainConfig(precision=precision, seed=seed, device="cpu", out=""), out=None, quiet=True)
            accs.append(result.last_module["test_accuracy"])
            walls.append(result.wall_time_s)
            print(precision, seed, accs[-1], walls[-1], flush=True)
        rows.append({"precision": precision, "last_module_accuracy": accs, "mean": mean(accs),
                     "std": pstdev(accs), "wall_time_s": walls})
    lines = [[r["precision"], " / ".join(f"{100 * a:.1f}" for a in r["last_module_accuracy"]), f"{100 * r['mean']:.2f}%",
              f"{100 * r['std']:.2f}", " / ".join(f"{w:.1f}" for w in r["wall_time_s"])] for r in rows]
    markdown = ("Default `edgetrgl train` setting (ResNet-20, K=4, sequential TRGL, mnist5k, 2 epochs per module), "
                "CPU.\n\n" + table(["precision", "last-module test accuracy per seed", "mean", "std",
                                      "wall time per run (s)"], lines))
    write_results("precision", {"seeds": args.seeds, "rows": rows}, markdown, output_folder(args))
    print(markdown)

if __name__ == "__main__":
    main()
