"""The accuracy a memory saving costs, on Fashion-MNIST: every method, K, regime and recipe, offline.

Data: Debian's ``dataset-fashion-mnist`` (or ``--data-dir``). Methods are names: ``e2e`` (backprop,
one head), ``e2e-long`` (e2e trained LONG times longer: to convergence), ``trgl`` (our default tau),
``trgl-tau1`` (the paper's tau: 0.5 then 1), ``<objective>+transport`` (the transport term on top of a
local objective, at our tau), and any local objective ``TrainConfig.method`` accepts (``vangl``,
``infopro``, ...); a method this checkout lacks is skipped and shown as "not run yet". "Same
compute": e2e and parallel train as many epochs in total as the sequential regime trains each module.
Each row also carries the planner's fake-tensor estimate of one step's peak (the worst module).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import fashionmnist_plateau as plateau
from _study import fmt

import edgetrgl
from edgetrgl import TrainConfig
from edgetrgl.data import TensorImageDataset, load_dataset
from edgetrgl.data._subsets import stratified_subset  # the rule train_fraction's subset follows
from edgetrgl.errors import UserError

FOLDER = Path(__file__).resolve().parent / "fashionmnist"
RESULTS, README, FIGURES = FOLDER / "results", FOLDER / "README.md", FOLDER
QUICK_SET = {"model_options": {"width": 4}}  # with --quick: one seed, one epoch, a width-4 net
LONG = 3  # e2e-long trains this many times the epochs of its part
LOCAL_OBJECTIVES = ("infopro", "infopro-c", "dgl", "predsim")
TRANSPORT = "+transport"  # e.g. "dgl+transport": the objective's loss plus the transport term
CORE = ("e2e", "vangl", "trgl-tau1", "trgl")
# e2e as a user under a memory limit runs it (batch 128): at sequential TRGL K=4's peak (104.7 MiB,
# ResNet-20 1x28x28) `--regime auto` picks checkpointing at full batch, the fastest that fits micro-batches
# of 64; at about a fifth of it (21 MiB) micro-batches of 16 with or without checkpointing
EQUAL_MEMORY = {"e2e-ckpt": {"checkpoint_blocks": True}, "e2e-mb64": {"micro_batch": 64},
                "e2e-mb16": {"micro_batch": 16}, "e2e-ckpt-mb16": {"checkpoint_blocks": True, "micro_batch": 16}}
CLAIM = ("e2e", "vangl", "trgl-tau1")  # the paper's small-data claim: first, before our own tau
BLOCKS = {"resnet20": 9, "resnet56": 27, "resnet110": 54, "vgg11_bn": 8, "vit_tiny": 12}
BASE = dict(dataset="fashionmnist", device="cpu", out="", batch_size=128, cache="auto")  # the library's defaults
SMALL_TEST = 2000  # test images of the small-data parts: 200 per class (binomial s.e. about 1 point)
LABELS = ("model", "fraction", "regime", "K", "method", "recipe", "epochs", "seed", "test_images")
GROUP = ("model", "fraction", "regime", "K", "method", "recipe", "epochs", "test_images")  # a cell, all seeds
SETTING = ("model", "fraction", "recipe")  # one chart panel: points that differ only in method, K, regime


def recipe(name: str) -> dict:
    """``ours`` (TrainConfig's defaults), ``paper`` (configs/paper.toml's optimiser and init), and
    either with ``-bn`` (``--recalibrate-bn``: BatchNorm statistics recomputed after training);
    ``fresh-lr<lr>``: ours at that lr, with no cache, so every module sees a fresh augmentation each epoch;
    ``cached<N>-lr<lr>``: ours at that lr, with a host cache of N augmented views of the training set."""
    if name.startswith("fresh-lr"):
        return {"lr": float(name.removeprefix("fresh-lr")), "cache": "none"}
    if name.startswith("cached"):
        views, lr = name.removeprefix("cached").split("-lr")
        return {"lr": float(lr), "cache": "host", "cache_views": int(views)}
    if name.startswith("ours"):
        return {"recalibrate_bn": True} if name == "ours-bn" else {}
    values = tomllib.loads((FOLDER.parents[2] / "configs" / "paper.toml").read_text())
    values = {k: v for k, v in values.items() if k not in ("regime", "method", "modules", "tau", "tau_schedule")}
    return {**values, "recalibrate_bn": True} if name == "paper-bn" else values


def method_fields(method: str) -> dict:
    """The TrainConfig fields a method name stands for."""
    if method in ("e2e", "e2e-long"):
        return {"regime": "e2e", "method": "vangl"}  # one module: no transport, no local objective
    if method in EQUAL_MEMORY:  # backprop under a memory limit: checkpointing, gradient accumulation
        return {"regime": "e2e", "method": "vangl", **EQUAL_MEMORY[method]}
    if method.startswith("trgl-mb"):
        return {"method": "trgl", "micro_batch": int(method.removeprefix("trgl-mb"))}
    if method == "trgl-tau1":
        return {"method": "trgl", "tau": 1.0, "tau_schedule": "double"}
    if method.endswith(TRANSPORT):
        return {"method": method.removesuffix(TRANSPORT), "transport": "on"}
    return {"method": method}


def cell(part: str, seed: int, *, model: str = "resnet20", fraction: float = 1.0, regime: str = "sequential",
         k: int | str = 4, method: str = "trgl", recipe_name: str = "ours", epochs: int,
         test_images: int | None = None) -> dict:
    """One run: its id, the labels the report groups by, and the TrainConfig fields. ``test_images``:
    evaluate on this fixed, balanced part of the 10,000 test images (the first of each class)."""
    cfg = {**BASE, **recipe(recipe_name), "model": model, "train_fraction": fraction, "regime": regime,
           "modules": BLOCKS[model] if k == "block" else k, "seed": seed,
           "epochs": epochs * (LONG if method == "e2e-long" else 1), **method_fields(method)}
    if cfg["regime"] == "e2e":
        cfg["modules"] = 1
        if recipe_name.startswith("paper"):  # the paper's e2e: lr 0.1 (divided by 5 at 60/80% of training; a cosine here)
            cfg.update(lr=0.1, lr_schedule="cosine")
    shown_regime, shown_k = ("e2e", 1) if cfg["regime"] == "e2e" else (regime, k)
    cell_id = f"{part}|{model}|f={fraction}|{shown_regime}|K={shown_k}|{method}|{recipe_name}|e={epochs}|seed={seed}"
    return {"id": cell_id + (f"|test={test_images}" if test_images else ""), "part": part, "model": model,
            "fraction": fraction, "regime": shown_regime, "K": shown_k, "method": method, "recipe": recipe_name,
            "epochs": epochs, "seed": seed, "test_images": test_images, "config": cfg}


def _grid(part: str, seed: int, epochs: int, **fixed) -> list[dict]:
    """Cells of ``part`` for one seed: the product of the list-valued entries of ``fixed``; one e2e per setting."""
    combos = [{}]
    for key, values in ((k, v) for k, v in fixed.items() if isinstance(v, (list, tuple))):
        combos = [{**c, key: v} for c in combos for v in values]
    out = {}
    for c in combos:
        args = {**fixed, **c}
        if args.get("method", "").startswith("e2e"):
            args["k"], args["regime"] = 1, "sequential"
        one = cell(part, seed, epochs=epochs, **args)
        out.setdefault(one["id"], one)
    return list(out.values())


def _part(seeds: int, epochs: int, what: str, name: str, **fixed):
    """A PARTS entry whose cells are ``_grid(name, ...)`` (small-data parts test on SMALL_TEST images)."""
    if fixed.get("fraction", 1.0) < 1.0:
        fixed["test_images"] = SMALL_TEST
    return seeds, epochs, what, lambda s, e, quick: _grid(name, s, e, **fixed)


_ALL = ("vangl", "trgl-tau1", "trgl") + LOCAL_OBJECTIVES
# ordered by priority (the a, b, c, then the rest); small2_long runs e2e-long at a third of its epochs
PARTS = {
    "small2": _part(5, 5, "ResNet-20, 2% (1,200 images), sequential block-wise (9 modules): the paper's small-data claim",
                    "small2", fraction=0.02, k="block", method=CLAIM),
    "small2_ours": _part(5, 5, "ResNet-20, 2%, sequential block-wise: TRGL at our default tau (10, doubled)",
                         "small2", fraction=0.02, k="block", method=("trgl",)),
    "small10": _part(3, 3, "ResNet-20, 10% (6,000 images), sequential K=4, every method available",
                     "small10", fraction=0.1, k=4, method=CORE + LOCAL_OBJECTIVES),
    "full": _part(2, 1, "ResNet-20, full set (60,000), sequential K=4, e2e / VanGL / TRGL, 1 epoch per module",
                  "full", fraction=1.0, k=4, method=("e2e", "vangl", "trgl")),
    "full_long": _part(1, 1, "ResNet-20, full set: e2e trained 3x longer (3 epochs), toward the published anchors",
                       "full", fraction=1.0, method=("e2e-long",)),
    "small2_parallel": _part(5, 5, "ResNet-20, 2%, parallel block-wise and K=4", "small2_parallel", fraction=0.02,
                             regime="parallel", k=("block", 4), method=("vangl", "trgl-tau1", "trgl")),
    "small2_k4": _part(5, 5, "ResNet-20, 2%, sequential K=4", "small2_k4", fraction=0.02, k=4,
                       method=("vangl", "trgl-tau1", "trgl")),
    "small2_long": (5, 15, "ResNet-20, 2%, e2e trained to convergence (3x the epochs)",
                    lambda s, e, quick: _grid("small2_long", s, max(1, e // LONG), fraction=0.02, test_images=SMALL_TEST,
                                              method=("e2e-long",))),
    "small2_long_k4": _part(5, 15, "ResNet-20, 2%, sequential K=4 at 15 epochs per module: the same compute as "
                            "small2_long's e2e", "small2_long", fraction=0.02, k=4, method=("vangl", "trgl-tau1")),
    "equal_memory": _part(3, 5, "ResNet-20, 10%, 5 epochs: e2e as users run it under a memory limit (checkpointing, "
                          "micro-batches of 64 and 16) beside sequential TRGL K=4 at full batch and micro-batches of 16",
                          "equal_memory", fraction=0.1, k=4,
                          method=("e2e", *EQUAL_MEMORY, "trgl", "trgl-mb16")),
    "small10_parallel": _part(3, 3, "ResNet-20, 10%, parallel K=4 and block-wise, every method available",
                              "small10_parallel", fraction=0.1, regime="parallel", k=(4, "block"), method=_ALL),
    "small10_transport": _part(3, 3, "ResNet-20, 10%, sequential K=4: the transport term (tau 10) on top of each "
                               "local objective", "small10", fraction=0.1, k=4,
                               method=tuple(m + TRANSPORT for m in LOCAL_OBJECTIVES)),
    "small10_block": _part(3, 3, "ResNet-20, 10%, sequential block-wise, every method available", "small10_block",
                           fraction=0.1, k="block", method=_ALL),
    "paper": _part(3, 5, "ResNet-20, 2%, the paper's recipe (configs/paper.toml), sequential and parallel K=4", "paper",
                   fraction=0.02, regime=("sequential", "parallel"), k=4, method=("vangl", "trgl-tau1"), recipe_name="paper"),
    "paper_bn": _part(3, 5, "ResNet-20, 2%, the paper's recipe with --recalibrate-bn (its BatchNorm statistics are "
                      "stale after 25 steps), sequential and parallel K=4", "paper", fraction=0.02,
                      regime=("sequential", "parallel"), k=4, method=("vangl", "trgl-tau1"), recipe_name="paper-bn"),
    "small2_bn": _part(5, 5, "ResNet-20, 2%, sequential block-wise, our recipe with --recalibrate-bn: does it help our "
                       "defaults?", "small2", fraction=0.02, k="block", method=("vangl", "trgl"), recipe_name="ours-bn"),
    "full_more": _part(3, 1, "ResNet-20, full set: third seed, block-wise, TRGL tau 1, local objectives", "full",
                       fraction=1.0, k=(4, "block"), method=("e2e",) + _ALL),
    "families": _part(3, 1, "ResNet-56, vgg11_bn, vit_tiny: full set, sequential K=4, e2e / VanGL / TRGL", "families",
                      model=("resnet56", "vgg11_bn", "vit_tiny"), fraction=1.0, k=4, method=("e2e", "vangl", "trgl")),
}


# ---- baselines to a plateau (fashionmnist_plateau.py: the lr grid, the epochs, the tables and chart) ----

def _plateau_cells(seed: int, quick: bool) -> list[dict]:
    out = []
    for method in plateau.METHODS:
        lr = plateau.chosen_lr(method)
        if lr is None:
            continue
        for e in plateau.sweep(method, lr)[0]:
            out += _grid(plateau.PART, seed, e, fraction=0.1, k=4, method=method, recipe_name=plateau.recipe_of(lr),
                         test_images=SMALL_TEST)
    return out


PARTS["plateau_lr"] = _part(1, plateau.GRID_EPOCHS, "ResNet-20, 10%, sequential K=4 with no cache (fresh augmentation "
                            "for every module), e2e / VanGL / TRGL: the lr grid, chosen per method on the validation "
                            "split", plateau.PART, fraction=0.1, k=4, method=plateau.METHODS,
                            recipe_name=tuple(plateau.recipe_of(lr) for lr in plateau.LRS))
PARTS["cache_views"] = _part(3, 5, "ResNet-20, 10%, sequential TRGL K=4 at the plateau's lr and 5 epochs per module, "
                             "with a host cache of 1 or 5 augmented views instead of none (part plateau, fresh-lr0.025): "
                             "what caching the augmentation costs", "cache_views", fraction=0.1, k=4, method="trgl",
                             recipe_name=("cached1-lr0.025", "cached5-lr0.025"))
PARTS["plateau"] = (plateau.SEEDS, plateau.EPOCHS[0], "ResNet-20, 10%, e2e / VanGL / TRGL (sequential K=4, no cache) at "
                    "the lr chosen on validation, epochs doubled until the validation accuracy stops improving",
                    lambda s, e, quick: _plateau_cells(s, quick))


prepare = plateau.prepare  # run.py and report.py hand the rows over before asking for cells


@functools.cache
def available_methods() -> frozenset[str]:
    """The local objectives this checkout's TrainConfig accepts (probed, so a merge adds them by itself)."""
    ok = set()
    for name in ("vangl", "trgl") + LOCAL_OBJECTIVES:
        try:
            TrainConfig(method=name)
            ok.add(name)
        except UserError:
            pass
    return frozenset(ok)


def runnable(c: dict) -> bool:
    return c["config"]["method"] in available_methods()


TEST_PART_SEED = 0  # one test part for every cell and seed: methods and seeds are compared on the same images


def load_data(cfg, c: dict, data_dir, cache: dict):
    key = (cfg.train_fraction, cfg.seed)
    if cache.get("split") != key:  # one split in memory at a time (the full set is 47 MB of uint8)
        cache["split"], cache["data"] = key, load_dataset("fashionmnist", data_dir=data_dir,
                                                          train_fraction=cfg.train_fraction, seed=cfg.seed,
                                                          augment=cfg.augment)
    train, test, spec = cache["data"]
    if c.get("test_images"):
        # a seeded random, stratified part (n / N of every class, drawn as train_fraction's subset is),
        # the same for every cell and seed; not each class's first images: the files are in no random order
        keep = stratified_subset(test.labels, c["test_images"] / len(test), TEST_PART_SEED)
        spec = dataclasses.replace(spec, num_test=keep.numel())
        test = TensorImageDataset(test.images[keep], test.labels[keep], spec)
    return train, test, spec


def labels(c: dict, cfg, spec, cache: dict) -> dict:
    key = ("estimate", cfg.model, cfg.regime, cfg.modules, cfg.method, cfg.batch_size)
    if key not in cache:
        cache[key] = estimate_peak(cfg, spec)
    return {**{k: c[k] for k in LABELS}, "tau": cfg.tau, "tau_schedule": cfg.tau_schedule, "lr": cfg.lr,
            "estimated_peak_bytes": cache[key]}


def estimate_peak(cfg: TrainConfig, spec) -> int | None:
    """The planner's fake-tensor estimate of one training step's peak (the worst module), in bytes."""
    from edgetrgl.memory.estimate import estimate_parallel, estimate_sequential

    fn = estimate_sequential if cfg.regime in ("sequential", "multilap") else estimate_parallel
    try:
        peaks = fn(lambda: edgetrgl.build_network(cfg, spec), (cfg.batch_size, *spec.input_shape), spec.num_classes,
                   transport=cfg.method == "trgl" and cfg.regime != "e2e")
    except Exception as err:  # an estimate is a figure beside the result, never a reason to lose the run
        print(f"  (no estimate: {type(err).__name__}: {err})", file=sys.stderr)
        return None
    return max(int(p.peak_bytes) for p in (peaks if isinstance(peaks, list) else [peaks]))


# ---- the report ----

def mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:.0f}"


def key_of(row: dict, fields=GROUP) -> tuple:
    return tuple(row.get(f) for f in fields)


def planned_cells(parts=None) -> list[dict]:
    return [c for p in parts or PARTS for seed in range(PARTS[p][0]) for c in PARTS[p][3](seed, PARTS[p][1], False)]


def describe(key: tuple) -> str:
    g = dict(zip(GROUP, key))
    data = "full set" if g["fraction"] == 1.0 else f"{100 * g['fraction']:g}%"
    epochs = g["epochs"] * (LONG if g["method"] == "e2e-long" else 1)  # per module; e2e and parallel: in total
    return f"{g['model']}, {data}, {g['regime']}, K={g['K']}, {g['recipe']} recipe, {epochs} ep."


def group_rows(rows: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[key_of(r)].append(r)
    return groups


def summarise(key: tuple, runs: list[dict]) -> dict:
    return {**dict(zip(GROUP, key)), "seeds": sorted(r["seed"] for r in runs),
            "last": [r["last"] for r in runs], "best": [r["best"] for r in runs],
            "best_module": [r["best_module"] for r in runs],
            "estimated_peak_bytes": next((r["estimated_peak_bytes"] for r in runs if r.get("estimated_peak_bytes")), None),
            "epochs_run": runs[0]["config"]["epochs"], "wall_time_s": [r["wall_time_s"] for r in runs],
            "train_size": runs[0]["train_size"], "test_size": runs[0].get("test_size")}


def part_table(part: str, groups: dict[tuple, list[dict]]) -> str:
    """One markdown table per part: every cell of its grid, run or not."""
    seeds, epochs, what, _ = PARTS[part]
    planned: dict[tuple, list[dict]] = {}
    for c in planned_cells([part]):
        planned.setdefault(key_of(c), []).append(c)
    test = planned and next(iter(planned.values()))[0].get("test_images")
    lines = [f"### {part}: {what}\n", f"{seeds} seeds planned, {epochs} epoch(s) per module (e2e and parallel: in "
             f"total); test images: {test or 'all 10,000'}.\n",
             "| setting | method | seeds | last module | best module | best module # | est. peak MiB | s / run |",
             "|---|---|---|---|---|---|---|---|"]
    for key, cells in planned.items():
        runs = groups.get(key, [])
        if not runs:
            why = "not run yet" + ("" if runnable(cells[0]) else " (method not in this checkout)")
            lines.append(f"| {describe(key)} | {key[4]} | 0/{len(cells)} | {why} | | | | |")
            continue
        s = summarise(key, runs)
        modules = ",".join(str(m) for m in sorted(set(s["best_module"])))
        wall = sorted(s["wall_time_s"])[len(s["wall_time_s"]) // 2]
        lines.append(f"| {describe(key)} | {key[4]} | {len(runs)}/{len(cells)} | {fmt(s['last'])} | {fmt(s['best'])} | "
                     f"{modules} | {mib(s['estimated_peak_bytes'])} | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def other_table(groups: dict[tuple, list[dict]]) -> str:
    """Cells outside the grid of PARTS (an earlier protocol, paper_scale.py's runs), so no run is hidden."""
    planned = {key_of(c) for c in planned_cells()}
    extra = [k for k in groups if k not in planned]
    if not extra:
        return ""
    lines = ["### Other runs (outside the current grid)\n",
             "| setting | method | epochs | test images | seeds | last module | best module | est. peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for key in sorted(extra, key=str):
        s = summarise(key, groups[key])
        lines.append(f"| {describe(key)} | {s['method']} | {s['epochs_run']} | {s['test_images'] or 'all'} | "
                     f"{len(s['seeds'])} | {fmt(s['last'])} | {fmt(s['best'])} | {mib(s['estimated_peak_bytes'])} |")
    return "\n".join(lines) + "\n"


def paired(groups: dict[tuple, list[dict]], a: tuple, b: tuple, field: str = "last") -> str:
    """Mean of a - b in points over the seeds both cells have, with its 95% interval."""
    av, bv = ({r["seed"]: r[field] for r in groups.get(x, [])} for x in (a, b))
    seeds = sorted(set(av) & set(bv))
    return fmt([av[s] - bv[s] for s in seeds]) + f" ({len(seeds)} seeds)" if seeds else "—"


def claim_table(groups: dict[tuple, list[dict]]) -> str:
    """The paper's small-data claim (its Table 13: TRGL > VanGL at 2%, close to e2e), paired by seed."""
    lines = ["### The small-data claim, paired by seed (points, last module)\n",
             "| setting | TRGL (tau 1) − VanGL | TRGL (tau 10) − VanGL | TRGL (tau 1) − e2e | VanGL − e2e |",
             "|---|---|---|---|---|"]
    for key in sorted({k for k in groups if k[4] == "vangl"}, key=str):
        g = dict(zip(GROUP, key))
        at = lambda method, **kw: key_of({**g, "method": method, **kw})  # noqa: E731
        e2e = at("e2e", regime="e2e", K=1)
        if e2e not in groups and g["epochs"] % LONG == 0:  # e2e trained LONG times its part's epochs, the same compute
            e2e = at("e2e-long", regime="e2e", K=1, epochs=g["epochs"] // LONG)
        lines.append(f"| {describe(at('vangl'))} | {paired(groups, at('trgl-tau1'), at('vangl'))} | "
                     f"{paired(groups, at('trgl'), at('vangl'))} | {paired(groups, at('trgl-tau1'), e2e)} | "
                     f"{paired(groups, at('vangl'), e2e)} |")
    return "\n".join(lines) + "\n"


def transport_table(groups: dict[tuple, list[dict]]) -> str:
    """What the transport term adds on top of each local objective, paired by seed; empty without runs."""
    with_term = sorted((k for k in groups if str(k[4]).endswith(TRANSPORT)), key=str)
    if not with_term:
        return ""
    lines = ["### The transport term on top of a local objective, paired by seed (points, last module)\n",
             "| setting | objective | objective alone | with transport | with − alone |", "|---|---|---|---|---|"]
    for key in with_term:
        alone = key_of({**dict(zip(GROUP, key)), "method": key[4].removesuffix(TRANSPORT)})
        lines.append(f"| {describe(key)} | {alone[4]} | {fmt([r['last'] for r in groups.get(alone, [])])} | "
                     f"{fmt([r['last'] for r in groups[key]])} | {paired(groups, key, alone)} |")
    return "\n".join(lines) + "\n"


def measured_table(folder: Path) -> str:
    """The planner's estimate beside a measured step (``measure_memory.sh`` writes ``folder/<model>_k<K>.json``
    and ``.estimate.json``); empty when nothing was measured."""
    benches = sorted(p for p in folder.glob("*.json") if not p.name.endswith(".estimate.json")
                     and p.name != plateau.MEASURED) if folder.is_dir() else []
    if not benches:
        return ""
    lines = ["### Estimate against measurement (one training step, batch 128, 1x28x28)\n",
             "Written from `benchmarks/accuracy/fashionmnist/measure_memory.sh` (`edgetrgl bench`, a fresh process "
             "per method): the planner's fake-tensor estimate (`--estimate`, the study's memory column), "
             "MemTracker's measured tensor peak, and the process's RSS above its baseline (runtime and allocator "
             "included).\n",
             "| model | K | method | est. peak MiB | measured tensor peak MiB | est. / measured | measured RSS Δ MiB |",
             "|---|---|---|---|---|---|---|"]
    seen = set()
    for path in benches:
        bench, estimate_path = json.loads(path.read_text()), path.with_suffix(".estimate.json")
        estimated = ({r["method"]: r["peak_bytes"] for r in json.loads(estimate_path.read_text())["results"]}
                     if estimate_path.exists() else {})
        setting = bench["setting"]
        k = "block" if setting["modules"] == setting.get("num_blocks") else str(setting["modules"])
        for r in bench["results"]:
            shown = (setting["model"], "1" if r["method"] == "e2e" else k, r["method"])
            if shown in seen:  # e2e is in every file of a model
                continue
            seen.add(shown)
            est = estimated.get(r["method"])
            ratio = f"{est / r['peak_bytes']:.2f}" if est else "—"
            lines.append(f"| {' | '.join(shown)} | {mib(est)} | {mib(r['peak_bytes'])} | {ratio} | "
                         f"{mib(r.get('peak_rss_bytes'))} |")
    return "\n".join(lines) + "\n"


def tables(rows: list[dict], results: Path) -> dict[str, str]:
    """Each table by name, in tables.md's order; ``summary`` is the README's block: the claim, the
    transport term, every part with a finished run, the measured memory."""
    groups = group_rows(rows)
    made = {"claim": claim_table(groups), "transport": transport_table(groups)}
    made.update({f"part:{p}": part_table(p, groups) for p in PARTS})
    made.update(other=other_table(groups), measured=measured_table(results / "measured"))
    made["plateau"] = plateau.tables(rows)
    shown = [made["claim"], made["transport"]] + ([made["plateau"]] if any(r.get("part") == plateau.PART for r in rows) else [])
    shown += [made[f"part:{p}"] for p in PARTS if any(key_of(c) in groups for c in planned_cells([p]))]
    made["summary"] = (f"_Written by `python benchmarks/accuracy/report.py fashionmnist --record` from {len(rows)} runs; "
                       "all tables: benchmarks/accuracy/fashionmnist/results/tables.md._\n\n") + "\n".join(
        t.replace("### ", "#### ", 1) for t in shown + [made["measured"]] if t)
    return made


def tables_md(rows: list[dict], made: dict[str, str], sessions: list[dict]) -> str:
    machine = sessions[-1]["machine"] if sessions else {}
    return "\n".join(["# Fashion-MNIST accuracy study: tables\n",
                      "Written by `python benchmarks/accuracy/report.py fashionmnist` from `results/runs.jsonl` "
                      f"({len(rows)} runs). Accuracies in %, mean ± 95% interval over seeds (n seeds: the \"seeds\" "
                      "column), on Fashion-MNIST's test images: all 10,000 for the full-set parts, a fixed balanced 2,000 "
                      "(200 per class, the same for every seed) for the small-data parts. \"est. peak\": the planner's "
                      "fake-tensor estimate of one training step's peak (tensors only, the worst module).\n",
                      f"Machine: {json.dumps(machine)}\n", *(t for name, t in made.items() if name != "summary")])


def summary(rows: list[dict]) -> list[dict]:
    return [summarise(k, v) for k, v in group_rows(rows).items()]


def figures(rows: list[dict], folder: Path) -> list[Path]:
    planned = {key_of(c) for c in planned_cells()}
    # the plateau's runs have their own chart: memory there is the whole process, measured
    png = chart([s for s in summary(rows) if key_of(s) in planned and not s["recipe"].startswith("fresh")],
                folder / "accuracy_memory.png")
    converged = plateau.chart(rows, plateau.read_measured(RESULTS), folder / "plateau.png")
    return [p for p in (png, converged) if p]


METHOD_ORDER = ("e2e", "e2e-long", "vangl", "trgl-tau1", "trgl", "infopro", "infopro-c", "dgl", "predsim")
MARKERS = {("e2e", "1"): "*", ("sequential", "4"): "o", ("sequential", "block"): "s", ("parallel", "4"): "^",
           ("parallel", "block"): "v"}


def shape_of(s: dict) -> str:
    return "backprop (K=1)" if s["regime"] == "e2e" else f"{s['regime'][:3]} K={s['K']}"


def chart(summaries: list[dict], path: Path) -> Path | None:
    """Accuracy (last module, mean over seeds) against the estimated peak, one panel per setting: colour
    is the method, the marker the regime and K, the Pareto front (the best accuracy for each memory) a
    step line through ringed points. The y range follows the means, so one wide interval does not flatten the rest."""
    from edgetrgl.bench.pareto import pareto_front
    from edgetrgl.plots import mean_ci95, new_figure

    panels: dict[tuple, list[dict]] = defaultdict(list)
    for s in summaries:
        if s["estimated_peak_bytes"]:
            panels[key_of(s, SETTING)].append(s)
    panels = {k: v for k, v in panels.items() if len(v) >= 2}
    if not panels:
        return None
    cols, rows = min(3, len(panels)), math.ceil(len(panels) / 3)
    fig = new_figure(figsize=(6.4 * cols, 4.6 * rows + 0.6), dpi=100)
    colour = {m: f"C{i}" for i, m in enumerate(METHOD_ORDER)}
    legend: dict[str, object] = {}
    for i, (setting, points) in enumerate(sorted(panels.items(), key=lambda kv: kv[0]), 1):
        ax = fig.add_subplot(rows, cols, i)
        xs = [p["estimated_peak_bytes"] / 2**20 for p in points]
        ys = [mean_ci95([100 * v for v in p["last"]]) for p in points]
        front = set(pareto_front([(x, -y[0]) for x, y in zip(xs, ys)]))
        for j, (p, x, (y, half)) in enumerate(zip(points, xs, ys)):
            marker = MARKERS.get((p["regime"], str(p["K"])), "D")
            base, transport = p["method"].removesuffix(TRANSPORT), p["method"].endswith(TRANSPORT)
            c = colour.get(base, "k")  # an objective + transport: its colour, hollow
            ax.errorbar(x, y, yerr=0 if math.isnan(half) else half, fmt="none", ecolor=c, alpha=0.5, capsize=2)
            ax.scatter([x], [y], marker=marker, s=70 if j in front else 40, facecolors="white" if transport else c,
                       edgecolors="k" if j in front else c, linewidths=1.2, zorder=3)
            legend.setdefault(base, ax.scatter([], [], marker="o", color=c))
            if transport:
                legend.setdefault("hollow: + transport", ax.scatter([], [], marker="o", facecolors="white", edgecolors="k"))
            legend.setdefault(shape_of(p), ax.scatter([], [], marker=marker, facecolors="none", edgecolors="k"))
        order = sorted(front, key=lambda j: xs[j])
        ax.step([xs[j] for j in order], [ys[j][0] for j in order], where="post", color="k", alpha=0.4)
        means = [y for y, _ in ys]
        ax.set_ylim(min(means) - 3, max(means) + 3)
        model, fraction, recipe_name = setting
        ax.set_title(f"{model}, {'full set' if fraction == 1.0 else f'{100 * fraction:g}% of the data'}, {recipe_name}")
        ax.set_xscale("log")
        ax.set_xlabel("planner's estimated peak of one step (MiB, log)")
        ax.set_ylabel("test accuracy, last module (%)")
        ax.grid(alpha=0.3)
    rank = {name: i for i, name in enumerate(METHOD_ORDER + tuple(shape_of({"regime": r, "K": k}) for r, k in MARKERS))}
    legend = dict(sorted(legend.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    legend["front: best accuracy for its memory (ringed)"] = fig.axes[0].plot([], [], color="k", alpha=0.4)[0]
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=math.ceil(len(legend) / 2), fontsize=8)
    fig.suptitle("Fashion-MNIST: accuracy against memory (mean ± 95% interval over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.6 / (4.6 * rows + 0.6), 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
