"""The accuracy a memory saving costs, on Fashion-MNIST: every method, K, regime and recipe, offline.

Each cell is one ``edgetrgl.train`` call on Debian's ``dataset-fashion-mnist`` (or ``--data-dir``);
each finished run is appended at once to ``results/runs.jsonl`` with its per-module test
accuracies and the planner's estimated peak, and a rerun skips the rows already there, so the
study runs in resumable pieces (``--part NAME``, in the order of PARTS: most important first).

Methods are names: ``e2e`` (backprop, one head), ``e2e-long`` (e2e trained LONG times longer: to
convergence), ``trgl`` (our default tau), ``trgl-tau1`` (the paper's tau: 0.5 then 1),
``<objective>+transport`` (the transport term on top of a local objective, at our tau), and any
local objective the checkout's ``TrainConfig.method`` accepts (``vangl``, ``infopro``, ...); a
method this checkout lacks is skipped with a note, and ``report.py`` shows it as "not run yet".

"Same compute": e2e and parallel train as many epochs in total as the sequential regime trains
each module (every image passes every block the same number of times).

    python benchmarks/accuracy/fashionmnist/run.py --list                 # parts, cells, what is done
    nice -n 15 python benchmarks/accuracy/fashionmnist/run.py --part small2 --threads 1
    python benchmarks/accuracy/fashionmnist/run.py --part small2 --dry-run
    python benchmarks/accuracy/fashionmnist/report.py                     # tables.md and the chart
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # benchmarks/_common.py

import torch  # noqa: E402

from _common import Contention, command, machine  # noqa: E402

import edgetrgl  # noqa: E402
from edgetrgl import TrainConfig  # noqa: E402
from edgetrgl.data import TensorImageDataset, load_dataset  # noqa: E402
from edgetrgl.errors import UserError  # noqa: E402

ROOT = HERE.parent.parent.parent
LONG = 3  # e2e-long trains this many times the epochs of its part
TAU_PAPER = 1.0  # with the "double" schedule: 0.5 for the first half of the modules, 1 for the second
LOCAL_OBJECTIVES = ("infopro", "infopro-c", "dgl", "predsim")
TRANSPORT = "+transport"  # e.g. "dgl+transport": the objective's loss plus the transport term
CORE = ("e2e", "vangl", "trgl-tau1", "trgl")
CLAIM = ("e2e", "vangl", "trgl-tau1")  # the paper's small-data claim: first, before our own tau
BLOCKS = {"resnet20": 9, "resnet56": 27, "resnet110": 54, "vgg11_bn": 8, "vit_tiny": 12}
# Shared by every cell: the library's own defaults ("ours"), fixed before any result was seen.
BASE = dict(dataset="fashionmnist", device="cpu", out="", batch_size=128, cache="auto")
SMALL_TEST = 2000  # test images of the small-data parts: 200 per class (binomial s.e. about 1 point)


def recipe(name: str) -> dict:
    """``ours`` (TrainConfig's defaults), ``paper`` (configs/paper.toml's optimiser and init), and
    either with ``-bn`` (``--recalibrate-bn``: BatchNorm statistics recomputed after training)."""
    if name == "ours":
        return {}
    if name == "ours-bn":
        return {"recalibrate_bn": True}
    values = tomllib.loads((ROOT / "configs" / "paper.toml").read_text())
    values = {k: v for k, v in values.items() if k not in ("regime", "method", "modules", "tau", "tau_schedule")}
    return {**values, "recalibrate_bn": True} if name == "paper-bn" else values


def method_fields(method: str) -> dict:
    """The TrainConfig fields a method name stands for."""
    if method in ("e2e", "e2e-long"):
        return {"regime": "e2e", "method": "vangl"}  # one module: no transport, no local objective
    if method == "trgl-tau1":
        return {"method": "trgl", "tau": TAU_PAPER, "tau_schedule": "double"}
    if method.endswith(TRANSPORT):  # a local objective with the transport term on top (our tau)
        return {"method": method.removesuffix(TRANSPORT), "transport": "on"}
    return {"method": method}


def cell(part: str, seed: int, *, model: str = "resnet20", fraction: float = 1.0, regime: str = "sequential",
         k: int | str = 4, method: str = "trgl", recipe_name: str = "ours", epochs: int,
         test_images: int | None = None) -> dict:
    """One run: its id, the labels the report groups by, and the TrainConfig fields.

    ``test_images``: evaluate on this fixed, balanced part of the 10,000 test images (the first
    ones of each class, whatever the seed) instead of all of them: on 2 busy cores the test pass
    of a small-data run costs as much as its training.
    """
    modules = BLOCKS[model] if k == "block" else k
    cfg = {**BASE, **recipe(recipe_name), "model": model, "train_fraction": fraction, "regime": regime,
           "modules": modules, "seed": seed, "epochs": epochs * (LONG if method == "e2e-long" else 1),
           **method_fields(method)}
    if cfg["regime"] == "e2e":
        cfg["modules"] = 1
        if recipe_name.startswith("paper"):  # the paper's e2e: lr 0.1 (divided by 5 at 60/80% of training; a cosine here)
            cfg.update(lr=0.1, lr_schedule="cosine")
    shown_regime = "e2e" if cfg["regime"] == "e2e" else regime
    shown_k = 1 if cfg["regime"] == "e2e" else k
    cell_id = f"{part}|{model}|f={fraction}|{shown_regime}|K={shown_k}|{method}|{recipe_name}|e={epochs}|seed={seed}"
    cell_id += f"|test={test_images}" if test_images else ""
    return {"id": cell_id, "part": part, "model": model, "fraction": fraction, "regime": shown_regime, "K": shown_k,
            "method": method, "recipe": recipe_name, "epochs": epochs, "seed": seed, "test_images": test_images,
            "config": cfg}


def _grid(part: str, seed: int, epochs: int, **fixed) -> list[dict]:
    """Cells of ``part`` for one seed: the product of the list-valued entries of ``fixed``."""
    lists = {k: v for k, v in fixed.items() if isinstance(v, (list, tuple))}
    cells = [{}]
    for key, values in lists.items():
        cells = [{**c, key: v} for c in cells for v in values]
    out, seen = [], set()
    for c in cells:
        args = {**fixed, **c}
        if args.get("method", "").startswith("e2e"):  # one e2e per setting, whatever the K or regime
            args["k"], args["regime"] = 1, "sequential"
        one = cell(part, seed, epochs=epochs, **args)
        if one["id"] not in seen:
            seen.add(one["id"])
            out.append(one)
    return out


# name: (seeds, epochs, what, cells(seed, epochs)); ordered by priority (the a, b, c, then the rest)
PARTS = {
    "small2": (5, 5, "ResNet-20, 2% (1,200 images), sequential block-wise (9 modules): the paper's small-data claim",
               lambda s, e: _grid("small2", s, e, fraction=0.02, test_images=SMALL_TEST, k="block", method=CLAIM)),
    "small2_ours": (5, 5, "ResNet-20, 2%, sequential block-wise: TRGL at our default tau (10, doubled)",
                    lambda s, e: _grid("small2", s, e, fraction=0.02, test_images=SMALL_TEST, k="block", method=("trgl",))),
    "small10": (3, 3, "ResNet-20, 10% (6,000 images), sequential K=4, every method available",
                lambda s, e: _grid("small10", s, e, fraction=0.1, test_images=SMALL_TEST, k=4, method=CORE + LOCAL_OBJECTIVES)),
    "full": (2, 1, "ResNet-20, full set (60,000), sequential K=4, e2e / VanGL / TRGL, 1 epoch per module",
             lambda s, e: _grid("full", s, e, fraction=1.0, k=4, method=("e2e", "vangl", "trgl"))),
    "full_long": (1, 1, "ResNet-20, full set: e2e trained 3x longer (3 epochs), toward the published anchors",
                  lambda s, e: _grid("full", s, e, fraction=1.0, method=("e2e-long",))),
    "small2_parallel": (5, 5, "ResNet-20, 2%, parallel block-wise and K=4",
                        lambda s, e: _grid("small2_parallel", s, e, fraction=0.02, test_images=SMALL_TEST, regime="parallel", k=("block", 4),
                                           method=("vangl", "trgl-tau1", "trgl"))),
    "small2_k4": (5, 5, "ResNet-20, 2%, sequential K=4",
                  lambda s, e: _grid("small2_k4", s, e, fraction=0.02, test_images=SMALL_TEST, k=4, method=("vangl", "trgl-tau1", "trgl"))),
    "small2_long": (5, 15, "ResNet-20, 2%, e2e trained to convergence (3x the epochs)",
                    lambda s, e: _grid("small2_long", s, e // LONG, fraction=0.02, test_images=SMALL_TEST, method=("e2e-long",))),
    "small2_long_k4": (5, 15, "ResNet-20, 2%, sequential K=4 at 15 epochs per module: the same compute as small2_long's e2e",
                       lambda s, e: _grid("small2_long", s, e, fraction=0.02, test_images=SMALL_TEST, k=4,
                                          method=("vangl", "trgl-tau1"))),
    "small10_parallel": (3, 3, "ResNet-20, 10%, parallel K=4 and block-wise, every method available",
                         lambda s, e: _grid("small10_parallel", s, e, fraction=0.1, test_images=SMALL_TEST, regime="parallel", k=(4, "block"),
                                            method=("vangl", "trgl-tau1", "trgl") + LOCAL_OBJECTIVES)),
    "small10_transport": (3, 3, "ResNet-20, 10%, sequential K=4: the transport term (tau 10) on top of each local objective",
                          lambda s, e: _grid("small10", s, e, fraction=0.1, test_images=SMALL_TEST, k=4,
                                             method=tuple(m + TRANSPORT for m in LOCAL_OBJECTIVES))),
    "small10_block": (3, 3, "ResNet-20, 10%, sequential block-wise, every method available",
                      lambda s, e: _grid("small10_block", s, e, fraction=0.1, test_images=SMALL_TEST, k="block",
                                         method=("vangl", "trgl-tau1", "trgl") + LOCAL_OBJECTIVES)),
    "paper": (3, 5, "ResNet-20, 2%, the paper's recipe (configs/paper.toml), sequential and parallel K=4",
              lambda s, e: _grid("paper", s, e, fraction=0.02, test_images=SMALL_TEST, regime=("sequential", "parallel"), k=4,
                                 method=("vangl", "trgl-tau1"), recipe_name="paper")),
    "paper_bn": (3, 5, "ResNet-20, 2%, the paper's recipe with --recalibrate-bn (its BatchNorm statistics are stale "
                 "after 25 steps), sequential and parallel K=4",
                 lambda s, e: _grid("paper", s, e, fraction=0.02, test_images=SMALL_TEST, regime=("sequential", "parallel"),
                                    k=4, method=("vangl", "trgl-tau1"), recipe_name="paper-bn")),
    "small2_bn": (5, 5, "ResNet-20, 2%, sequential block-wise, our recipe with --recalibrate-bn: does it help our defaults?",
                  lambda s, e: _grid("small2", s, e, fraction=0.02, test_images=SMALL_TEST, k="block",
                                     method=("vangl", "trgl"), recipe_name="ours-bn")),
    "full_more": (3, 1, "ResNet-20, full set: third seed, block-wise, TRGL tau 1, local objectives",
                  lambda s, e: _grid("full", s, e, fraction=1.0, k=(4, "block"),
                                     method=("e2e", "vangl", "trgl-tau1", "trgl") + LOCAL_OBJECTIVES)),
    "families": (3, 1, "ResNet-56, vgg11_bn, vit_tiny: full set, sequential K=4, e2e / VanGL / TRGL",
                 lambda s, e: [c for m in ("resnet56", "vgg11_bn", "vit_tiny")
                               for c in _grid("families", s, e, model=m, fraction=1.0, k=4,
                                              method=("e2e", "vangl", "trgl"))]),
}


def available_methods() -> set[str]:
    """The local objectives this checkout's TrainConfig accepts (probed, so a merge adds them by itself)."""
    ok = set()
    for name in ("vangl", "trgl") + LOCAL_OBJECTIVES:
        try:
            TrainConfig(method=name)
            ok.add(name)
        except UserError:
            pass
    return ok


def runnable(c: dict, methods: set[str]) -> bool:
    return c["config"]["method"] in methods


def estimate_peak(cfg: TrainConfig, spec) -> int | None:
    """The planner's fake-tensor estimate of one training step's peak (the worst module), in bytes."""
    import inspect

    from edgetrgl.memory.estimate import estimate_parallel, estimate_sequential

    build = lambda: edgetrgl.build_network(cfg, spec)  # noqa: E731  built inside the fake mode
    shape = (cfg.batch_size, *spec.input_shape)
    fn = estimate_sequential if cfg.regime in ("sequential", "multilap") else estimate_parallel
    params = inspect.signature(fn).parameters
    if "objective" in params:  # the local-objectives branch names the objective instead of a transport flag
        kwargs = {"objective": cfg.method}
    else:
        kwargs = {"transport": cfg.method == "trgl" and cfg.regime != "e2e"}
    try:
        peaks = fn(build, shape, spec.num_classes, **kwargs)
    except Exception as err:  # an estimate is a figure beside the result, never a reason to lose the run
        print(f"  (no estimate: {type(err).__name__}: {err})", file=sys.stderr)
        return None
    peaks = peaks if isinstance(peaks, list) else [peaks]
    return max(int(p.peak_bytes) for p in peaks)


def balanced_test_part(test, n: int):
    """The first ``n / classes`` test images of every class (fixed across seeds), and its spec."""
    per_class = n // test.spec.num_classes
    keep = torch.cat([torch.nonzero(test.labels == c).flatten()[:per_class] for c in range(test.spec.num_classes)])
    keep = torch.sort(keep).values
    spec = dataclasses.replace(test.spec, num_test=keep.numel())
    return TensorImageDataset(test.images[keep], test.labels[keep], spec), spec


def run_cell(c: dict, data_dir: str | None, datasets: dict, estimates: dict) -> dict:
    cfg = TrainConfig(**{**c["config"], **({"data_dir": data_dir} if data_dir else {})})
    key = (cfg.train_fraction, cfg.seed)
    if key not in datasets:
        datasets.clear()  # one split in memory at a time (the full set is 47 MB of uint8)
        datasets[key] = load_dataset("fashionmnist", data_dir=data_dir, train_fraction=cfg.train_fraction,
                                     seed=cfg.seed, augment=cfg.augment)
    train, test, spec = datasets[key]
    if c.get("test_images"):
        test, spec = balanced_test_part(test, c["test_images"])
    ekey = (cfg.model, cfg.regime, cfg.modules, cfg.method, cfg.batch_size)
    if ekey not in estimates:
        estimates[ekey] = estimate_peak(cfg, spec)
    gauge, started = Contention(), time.perf_counter()
    result = edgetrgl.train(cfg, data=(train, test, spec), quiet=True)
    accuracies = [m["test_accuracy"] for m in result.modules]
    return {
        **{k: c[k] for k in ("id", "part", "model", "fraction", "regime", "K", "method", "recipe", "epochs", "seed",
                             "test_images")},
        "config": c["config"], "tau": cfg.tau, "tau_schedule": cfg.tau_schedule, "lr": cfg.lr, "train_size": len(train), "test_size": len(test),
        "test_accuracy": accuracies, "last": accuracies[-1], "best": max(accuracies),
        "best_module": result.best_module["module"], "estimated_peak_bytes": estimates[ekey],
        "wall_time_s": round(time.perf_counter() - started, 1), "other_busy_cores": gauge.busy_cores(),
        "data_mode": result.extra.get("data_mode"), "cache": result.extra.get("cache"),
    }


def read_rows(path: Path) -> list[dict]:
    """The JSON lines of ``path`` (none if it is missing), without a last line cut short by a kill."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # that run goes again
    return rows


def done_ids(log: Path) -> set[str]:
    return {r["id"] for r in read_rows(log) if "id" in r}


def cells_of(parts: list[str], seeds: int | None, epochs: int | None) -> list[dict]:
    """Every cell of ``parts`` in priority order, seed-major inside a part (a cut-short part covers every method)."""
    out = []
    for part in parts:
        n_seeds, n_epochs, _, make = PARTS[part]
        for seed in range(seeds or n_seeds):
            out += make(seed, epochs or n_epochs)
    return out


def with_overrides(cells: list[dict], overrides: dict) -> list[dict]:
    """``cells`` with extra TrainConfig fields (e.g. a tiny model for tests); the id records them."""
    if not overrides:
        return cells
    tag = "|" + ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(overrides.items()))
    return [{**c, "id": c["id"] + tag, "config": {**c["config"], **overrides}} for c in cells]


def append_row(log: Path, record: dict) -> None:
    """One JSON line, flushed at once: a kill loses at most the run in progress."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def log_session(results: Path, runs: int) -> None:
    """One line per invocation: command, machine, versions, start time."""
    append_row(results / "sessions.jsonl", {"command": command(), "machine": machine(), "runs": runs,
                                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def report_line(i: int, n: int, elapsed: float, record: dict) -> str:
    return (f"[{i}/{n} {elapsed:6.0f} s] {record['id']}: last {100 * record['last']:.1f}% "
            f"best {100 * record['best']:.1f}% (module {record['best_module']}) in {record['wall_time_s']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--part", action="append", choices=list(PARTS), help="a part to run (repeatable; default all, "
                        "in priority order)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the part's)")
    parser.add_argument("--epochs", type=int, help="epochs per module (default: the part's)")
    parser.add_argument("--data-dir", help="where Fashion-MNIST is (default: found by edgetrgl)")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="folder of runs.jsonl")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON",
                        help='extra TrainConfig fields for every run, e.g. \'{"model_options": {"width": 4}}\' '
                             "(recorded in the run ids)")
    parser.add_argument("--model", action="append", choices=sorted(BLOCKS),
                        help="only this model's cells (repeatable), e.g. one family of the families part per process")
    parser.add_argument("--max-runs", type=int, help="stop after this many runs")
    parser.add_argument("--shard", default="0/1", metavar="I/N",
                        help="run only the I-th of every N cells of the grid (0-based), so N processes share it")
    parser.add_argument("--dry-run", action="store_true", help="list the runs still to do, and stop")
    parser.add_argument("--list", action="store_true", help="list the parts: runs, done, what they are")
    args = parser.parse_args(argv)
    parts = args.part or list(PARTS)
    log = args.results / "runs.jsonl"
    done, methods = done_ids(log), available_methods()
    if args.list:
        rows = {r["id"]: r for r in read_rows(log)}
        print("| part | done / planned | needs a method this checkout lacks | seeds | epochs | median s / run | what |")
        print("|---|---|---|---|---|---|---|")
        for name, (seeds, epochs, what, _) in PARTS.items():
            cells = with_overrides(cells_of([name], args.seeds, args.epochs), args.set)
            walls = sorted(rows[c["id"]]["wall_time_s"] for c in cells if c["id"] in rows)
            lacking = sum(not runnable(c, methods) for c in cells)
            median = f"{walls[len(walls) // 2]:.0f}" if walls else "—"
            print(f"| {name} | {len(walls)} / {len(cells)} | {lacking} | {seeds} | {epochs} | {median} | {what} |")
        return 0
    shard, shards = (int(v) for v in args.shard.split("/"))
    grid = with_overrides(cells_of(parts, args.seeds, args.epochs), args.set)
    if args.model:
        grid = [c for c in grid if c["model"] in args.model]
    # sharded by position in the whole grid, not in what is left: processes started apart agree
    cells = [c for i, c in enumerate(grid) if i % shards == shard and c["id"] not in done]
    lacking = sorted({c["method"] for c in cells if not runnable(c, methods)})
    if lacking:
        print(f"skipping method(s) this checkout lacks: {', '.join(lacking)} (git merge main once they land)",
              file=sys.stderr)
    todo = [c for c in cells if runnable(c, methods)][: args.max_runs]
    print(f"{len(todo)} run(s) to do, {len(done)} already in {log}", file=sys.stderr)
    if args.dry_run:
        print("\n".join(c["id"] for c in todo))
        return 0
    torch.set_num_threads(args.threads)
    log_session(args.results, len(todo))
    datasets, estimates, started = {}, {}, time.perf_counter()
    for i, c in enumerate(todo, 1):
        record = run_cell(c, args.data_dir, datasets, estimates)
        append_row(log, record)
        print(report_line(i, len(todo), time.perf_counter() - started, record), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
