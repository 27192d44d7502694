"""Reproduce the paper's accuracy findings offline: greedy training stagnates, TRGL cures it.

Block-wise training (one residual block per module) of a CIFAR ResNet-20 (9 blocks = 9 modules) on
the bundled mnist5k sample at several training-set sizes, VanGL against TRGL, sequential / multilap /
parallel, and end-to-end on the same network; a 27-module ResNet-56 (width 8) for the per-module
curves; a tau x schedule sweep; a learning-rate check; an epochs check on the default `edgetrgl
train` setting and a short tau sweep on it. Every cell is one `edgetrgl.train` call; each finished cell is appended at once to
``<results>/runs.jsonl``, and a rerun skips the cells already there (so it resumes).

Protocol (fixed before any result was seen; see RESULTS.md):
  * library defaults: SGD momentum 0.9, weight decay 1e-4, lr 0.05 on a cosine to 0, batch 128,
    default init, tau 1.0 with the `double` schedule, 1CNN heads;
  * augmentation off everywhere (the host cache then holds exactly what a recomputed prefix would
    give, and every regime sees the same inputs); cache "host" for sequential / multilap;
  * the same number of optimizer steps per module at every training-set size: epochs per module =
    round(STEPS / batches per epoch), so 64 steps (2 epochs of the full 4,000 images, the default);
    multilap splits them over 2 laps, parallel and e2e run the same number of epochs in total
    (so every regime does about the same arithmetic);
  * the test set is always the fixed 1,000 images; train subsets are stratified, drawn by the seed.

    python benchmarks/accuracy/run.py --quick          # smoke test, about a minute
    python benchmarks/accuracy/run.py                  # the full grid, about an hour on 2 busy cores
    python benchmarks/accuracy/run.py --parts tau      # one part; finished cells are skipped
    python benchmarks/accuracy/report.py               # tables and PNGs from runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from _common import Contention, command, machine  # noqa: E402

import edgetrgl  # noqa: E402
from edgetrgl import TrainConfig  # noqa: E402
from edgetrgl.data import load_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent
FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.25, 1.0)
REGIME_FRACTIONS = (0.02, 1.0)  # multilap and parallel: the small end and the full set
TAU_FRACTION = 0.02
TAUS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0, 5000.0)
STEPS = 64  # optimizer steps per module (= 2 epochs of the full 4,000 images at batch 128)
PARTS = ("core", "regimes", "curves", "tau", "lr", "epochs", "tau_default")
SEEDS = {"core": 3, "regimes": 3, "curves": 3, "tau": 2, "lr": 3, "epochs": 2, "tau_default": 2}
DEFAULT_TAUS = (0.3, 3.0, 10.0, 100.0)  # tau 1 is in the "epochs" part (epochs=2 is the default)
BASE = dict(model="resnet20", modules=9, dataset="mnist5k", batch_size=128, lr=0.05, augment=False,
            tau=1.0, tau_schedule="double", device="cpu", out="")


def train_size(fraction: float) -> int:
    """Images in the stratified mnist5k training subset (400 per class, round(fraction * 400) kept)."""
    return 10 * max(1, round(fraction * 400))


def epochs_for(fraction: float, steps: int, batch_size: int) -> int:
    """Epochs that give about ``steps`` optimizer steps at this training-set size."""
    return max(1, round(steps / math.ceil(train_size(fraction) / batch_size)))


def cell(part: str, seed: int, fraction: float, regime: str, method: str = "trgl", steps: int = STEPS, **changes) -> dict:
    """One training run: an id and the TrainConfig fields."""
    cfg = {**BASE, "seed": seed, "train_fraction": fraction, "regime": regime, "method": method, **changes}
    epochs = epochs_for(fraction, steps, cfg["batch_size"])
    if regime == "multilap":
        cfg["laps"] = 2
        epochs = max(1, epochs // 2)
    cfg.setdefault("epochs", epochs)
    cfg["cache"] = "host" if regime in ("sequential", "multilap") else "auto"
    if regime == "e2e":  # one module, no transport term: the method field is not used
        cfg["method"], method = "vangl", "e2e"
    keys = ("model", "model_options", "modules", "lr", "tau", "tau_schedule", "epochs", "epochs_step")
    tag = ",".join(f"{k}={cfg[k]}" for k in keys if k in changes)
    return {"id": f"{part}|{regime}|{method}|f={fraction}|seed={seed}" + (f"|{tag}" if tag else ""),
            "part": part, "config": cfg}


def build_cells(parts: list[str], seeds: dict[str, int], quick: bool) -> list[dict]:
    """Every cell of the requested parts, ordered seed-major so a cut-short run covers every part."""
    cells = []
    for part in parts:
        for seed in range(seeds[part]):
            cells += _part_cells(part, seed, quick)
    order = {p: i for i, p in enumerate(parts)}
    return sorted(cells, key=lambda c: (c["config"]["seed"], order[c["part"]]))  # stable: keeps the order within a part


def _part_cells(part: str, seed: int, quick: bool) -> list[dict]:
    fractions = (0.01, 1.0) if quick else FRACTIONS
    steps = 4 if quick else STEPS
    small = dict(model_options={"width": 4}) if quick else {}
    if part == "core":
        return [cell(part, seed, f, regime, method, steps, **small)
                for f in fractions for regime, method in (("sequential", "vangl"), ("sequential", "trgl"), ("e2e", "e2e"))]
    if part == "regimes":
        return [cell(part, seed, f, regime, method, steps, **small)
                for f in ((0.02,) if quick else REGIME_FRACTIONS) for regime in ("multilap", "parallel") for method in ("vangl", "trgl")]
    if part == "curves":  # 27 one-block modules: where stagnation and collapse show most
        deep = dict(model="resnet56", model_options={"width": 4 if quick else 8}, modules=27)
        return [cell(part, seed, TAU_FRACTION, "sequential", method, steps, **deep) for method in ("vangl", "trgl")]
    if part == "tau":
        taus = (0.1, 100.0) if quick else TAUS
        cells = [cell(part, seed, TAU_FRACTION, "sequential", "trgl", steps, tau=t, tau_schedule=s, **small)
                 for s in ("constant", "double") for t in taus]
        # the multiplier variant ignores tau: lambda_k starts at 1 and grows by h * CE every s steps
        return cells + [cell(part, seed, TAU_FRACTION, "sequential", "trgl", steps, tau_schedule="multiplier", **small)]
    if part == "lr":  # the paper trains module-wise with a small lr: does it change the comparison?
        lr = dict(lr=0.01, **small)
        return [cell(part, seed, f, regime, method, steps, **lr)
                for f in ((0.01,) if quick else (0.01, 0.02)) for regime, method in (("sequential", "vangl"), ("sequential", "trgl"), ("e2e", "e2e"))]
    if part == "epochs":  # the default `edgetrgl train` setting: resnet20, K = 4, full set
        grid = ((1, 0),) if quick else ((1, 0), (2, 0), (4, 0), (1, 1))
        return [cell(part, seed, 1.0, "sequential", method, steps, modules=4, epochs=e, epochs_step=s, **small)
                for e, s in grid for method in ("vangl", "trgl")]
    if part == "tau_default":  # the tau sweep again, on the default `edgetrgl train` setting
        taus = (10.0,) if quick else DEFAULT_TAUS
        return [cell(part, seed, 1.0, "sequential", "trgl", steps, modules=4, epochs=1 if quick else 2, tau=t, **small)
                for t in taus]
    raise ValueError(part)


def run_cell(c: dict, datasets: dict) -> dict:
    cfg = TrainConfig(**c["config"])
    key = (cfg.train_fraction, cfg.seed)
    if key not in datasets:
        datasets[key] = load_dataset("mnist5k", train_fraction=cfg.train_fraction, seed=cfg.seed, augment=cfg.augment)
    gauge, started = Contention(), time.perf_counter()
    result = edgetrgl.train(cfg, data=datasets[key], quiet=True)
    return {
        "id": c["id"], "part": c["part"], "config": c["config"], "train_size": len(datasets[key][0]),
        "test_accuracy": [m["test_accuracy"] for m in result.modules],
        "last": result.last_module["test_accuracy"], "best": result.best_module["test_accuracy"],
        "best_module": result.best_module["module"], "wall_time_s": round(time.perf_counter() - started, 2),
        "other_busy_cores": gauge.busy_cores(), "data_mode": result.extra.get("data_mode"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (width-4 nets, 4 steps per module, 1 seed)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for every part (default: per part, see SEEDS)")
    parser.add_argument("--results", type=Path, default=None, help="folder for runs.jsonl (default: results/ or results_quick/)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a busy 2-core machine 2 threads ran up to ~18x slower)")
    parser.add_argument("--dry-run", action="store_true", help="list the cells still to run, and stop")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := sorted(set(parts) - set(PARTS)):
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    seeds = {p: args.seeds or (1 if args.quick else SEEDS[p]) for p in PARTS}
    results = args.results or HERE / ("results_quick" if args.quick else "results")
    results.mkdir(parents=True, exist_ok=True)
    log = results / "runs.jsonl"
    done = set()
    if log.exists():
        for line in log.read_text().splitlines():
            try:
                done.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError):
                pass  # a line cut short by a kill: that cell runs again
    todo = [c for c in build_cells(parts, seeds, args.quick) if c["id"] not in done]
    print(f"{len(todo)} cell(s) to run, {len(done)} already in {log}", file=sys.stderr)
    if args.dry_run:
        print("\n".join(c["id"] for c in todo))
        return 0
    torch.set_num_threads(args.threads)
    with (results / "sessions.jsonl").open("a") as fh:  # one line per invocation: command, machine, versions
        fh.write(json.dumps({"command": command(), "machine": machine(), "cells": len(todo)}) + "\n")
    datasets: dict = {}
    started = time.perf_counter()
    for i, c in enumerate(todo, 1):
        record = run_cell(c, datasets)
        with log.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        print(f"[{i}/{len(todo)} {time.perf_counter() - started:6.0f} s] {c['id']}: last {100 * record['last']:.1f}% "
              f"best {100 * record['best']:.1f}% (module {record['best_module']}) in {record['wall_time_s']:.1f} s "
              f"(others busy {record['other_busy_cores']} cores)", file=sys.stderr, flush=True)
    print(f"done in {time.perf_counter() - started:.0f} s; now: python benchmarks/accuracy/report.py"
          + (" --quick" if args.quick else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
