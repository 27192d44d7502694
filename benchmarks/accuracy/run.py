"""Run an accuracy study: every cell one ``edgetrgl.train`` call, one row of ``runs.jsonl`` each.

A study is ``study_<name>.py`` beside this file: its parts (seeds, epochs, what, the cells of one
seed), how it loads its data and what each row records besides the accuracies. Each finished run is
appended at once, and a rerun skips the rows already there, so a study runs in resumable pieces
(``--part``, ``--shard``, ``--max-runs``). Rows go to the study's recorded ``runs.jsonl`` only with
``--record`` (``--results DIR``: elsewhere; neither: a fresh temporary folder).

    python benchmarks/accuracy/run.py fashionmnist --quick --part small2   # a tiny version, about a minute
    python benchmarks/accuracy/run.py fashionmnist --record --part small2  # one part; finished cells are skipped
    python benchmarks/accuracy/run.py fashionmnist --list             # parts: runs done / planned
    for i in 0 1; do nice -n 15 python benchmarks/accuracy/run.py fashionmnist --record --shard $i/2 & done
    python benchmarks/accuracy/report.py fashionmnist --record        # tables, figures, the README's tables
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _study import append_row, load, read_rows, studies, usage

import torch  # noqa: E402

from _common import Contention, add_output_args, command, commit, machine, output_folder  # noqa: E402

import edgetrgl  # noqa: E402
from edgetrgl import TrainConfig  # noqa: E402
from edgetrgl.memory import reset_peak_rss  # noqa: E402


COMMIT = commit()  # the code this process loaded, not what the checkout holds when a run ends


def cells_of(study, parts: list[str], seeds: int | None = None, epochs: int | None = None,
             quick: bool = False) -> list[dict]:
    """Every cell of ``parts`` in the order given, seed-major inside a part (a cut-short part covers every method)."""
    out = []
    for part in parts:
        n_seeds, n_epochs, _, make = study.PARTS[part]
        for seed in range(seeds or (1 if quick else n_seeds)):
            out += make(seed, epochs or n_epochs, quick)
    return out


def with_overrides(cells: list[dict], overrides: dict) -> list[dict]:
    """``cells`` with extra TrainConfig fields (e.g. a tiny model for tests); the id records them."""
    if not overrides:
        return cells
    tag = "|" + ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(overrides.items()))
    return [{**c, "id": c["id"] + tag, "config": {**c["config"], **overrides}} for c in cells]


def runnable(study, cell: dict) -> bool:
    return getattr(study, "runnable", lambda c: True)(cell)


def run_cell(study, c: dict, data_dir: str | None, cache: dict) -> dict:
    """Train one cell; its row: the study's labels, the accuracies of every module, time and contention."""
    cfg = TrainConfig(**{**c["config"], **({"data_dir": data_dir} if data_dir else {})})
    train, test, spec = study.load_data(cfg, c, data_dir, cache)
    labels = study.labels(c, cfg, spec, cache)  # before the clock: an estimate is not the run's time
    reset_peak_rss()  # the process peak below is this run's (the harness process runs many)
    gauge, started = Contention(), time.perf_counter()
    result = edgetrgl.train(cfg, data=(train, test, spec), quiet=True)
    accuracies = [m["test_accuracy"] for m in result.modules]
    best = max(range(len(accuracies)), key=accuracies.__getitem__)
    return {"id": c["id"], "part": c["part"], **labels, "config": c["config"], "train_size": len(train),
            "test_size": len(test), "test_accuracy": accuracies, "last": accuracies[-1], "best": accuracies[best],
            "best_module": result.modules[best]["module"],
            # "best" above picks on the test set (optimistic); the run's own pick is on its validation split
            "val_accuracy": [m.get("val_accuracy") for m in result.modules],
            "chosen_module": result.best_module["module"], "chosen_by": result.chosen_by, "wall_time_s": round(time.perf_counter() - started, 2),
            "other_busy_cores": gauge.busy_cores(), "data_mode": result.extra.get("data_mode"),
            "cache": result.extra.get("cache"), "commit": COMMIT,
            # the whole process (runtime, data, cache in host memory: the same RAM on a board) and the tensors
            "process_peak_bytes": max(m.get("peak_rss_bytes") or 0 for m in result.modules) or None,
            "tensor_peak_bytes": max(m.get("peak_bytes") or 0 for m in result.modules) or None}


def claimed_by_another(results: Path, cell_id: str) -> bool:
    """Claim ``cell_id`` for this process (a file naming its pid); False if it is ours now. Another live
    process's claim is kept, so loops started side by side over a grid that grows never run a cell twice."""
    claims = results / ".claims"
    claims.mkdir(parents=True, exist_ok=True)
    path = claims / hashlib.sha1(cell_id.encode()).hexdigest()
    try:
        owner = int(path.read_text() or 0)
        if owner != os.getpid() and psutil.pid_exists(owner):
            return True
    except (OSError, ValueError):
        pass
    path.write_text(str(os.getpid()))  # no claim, or its process is gone: a race here costs one duplicate run
    return False


def list_parts(study, rows: list[dict], args) -> None:
    """The parts as a table: runs done of planned, how many need a method this checkout lacks, the median time."""
    done = {r["id"]: r for r in rows}
    print("| part | done / planned | needs a method this checkout lacks | seeds | epochs | median s / run | what |")
    print("|---|---|---|---|---|---|---|")
    for name, (seeds, epochs, what, _) in study.PARTS.items():
        cells = with_overrides(cells_of(study, [name], args.seeds, args.epochs, args.quick), args.set)
        walls = sorted(done[c["id"]]["wall_time_s"] for c in cells if c["id"] in done)
        lacking = sum(not runnable(study, c) for c in cells)
        median = f"{walls[len(walls) // 2]:.0f}" if walls else "—"
        print(f"| {name} | {len(walls)} / {len(cells)} | {lacking} | {seeds} | {epochs} | {median} | {what} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help=f"one of {', '.join(studies())}")
    parser.add_argument("--part", action="append", help="a part to run (repeatable; default all, in the study's order)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: the part's)")
    parser.add_argument("--epochs", type=int, help="epochs per module (default: the part's)")
    parser.add_argument("--quick", action="store_true", help="the study's tiny version, one seed")
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON",
                        help='extra TrainConfig fields for every run, e.g. \'{"model_options": {"width": 4}}\' (in the ids)')
    parser.add_argument("--model", action="append", help="only this model's cells (repeatable)")
    parser.add_argument("--max-runs", type=int, help="stop after this many runs")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="only the I-th of every N cells (0-based)")
    parser.add_argument("--data-dir", help="where the dataset is (default: found by edgetrgl)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs still to do, and stop")
    parser.add_argument("--list", action="store_true", help="list the parts: runs done, planned, what they are")
    add_output_args(parser)
    args = parser.parse_args(argv)
    study = load(args.study)
    if args.quick:  # the study's tiny flavour (a study may name TrainConfig fields)
        args.set, args.epochs = {**getattr(study, "QUICK_SET", {}), **args.set}, args.epochs or 1
    parts = args.part or list(study.PARTS)
    if unknown := [p for p in parts if p not in study.PARTS]:
        usage(f"unknown part {unknown[0]!r} of {args.study}; choose from {', '.join(study.PARTS)}")
    results = output_folder(args, study.RESULTS)
    if results is None:
        results = study.RESULTS if args.dry_run or args.list else Path(tempfile.mkdtemp(prefix=f"accuracy-{args.study}-"))
    log = results / "runs.jsonl"
    rows = read_rows(log)
    getattr(study, "prepare", lambda rows: None)(rows)  # a study whose later cells depend on earlier results
    if args.list:
        list_parts(study, rows, args)
        return 0
    done = {r["id"] for r in rows if "id" in r}
    shard, shards = (int(v) for v in args.shard.split("/"))
    grid = with_overrides(cells_of(study, parts, args.seeds, args.epochs, args.quick), args.set)
    grid = [c for c in grid if not args.model or c["config"]["model"] in args.model]
    # sharded by position in the whole grid, not in what is left: processes started apart agree
    cells = [c for i, c in enumerate(grid) if i % shards == shard and c["id"] not in done]
    if lacking := sorted({c["config"]["method"] for c in cells if not runnable(study, c)}):
        print(f"skipping method(s) this checkout lacks: {', '.join(lacking)}", file=sys.stderr)
    todo = [c for c in cells if runnable(study, c)]
    print(f"{len(todo)} run(s) to do, {len(done)} already in {log}", file=sys.stderr)
    if args.dry_run:
        print("\n".join(c["id"] for c in todo))
        return 0
    torch.set_num_threads(args.threads)
    append_row(results / "sessions.jsonl", {"command": command(), "machine": machine(), "runs": min(len(todo), args.max_runs or len(todo)),
                                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    cache, started, ran = {}, time.perf_counter(), 0
    for c in todo:
        if args.max_runs is not None and ran >= args.max_runs:
            break
        if claimed_by_another(results, c["id"]):
            continue
        ran += 1
        row = run_cell(study, c, args.data_dir, cache)
        append_row(log, row)
        print(f"[{ran}/{len(todo)} {time.perf_counter() - started:6.0f} s] {row['id']}: last {100 * row['last']:.1f}% "
              f"best {100 * row['best']:.1f}% (module {row['best_module']}) in {row['wall_time_s']:.0f} s",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
