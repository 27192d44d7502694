"""The study at the paper's scale, for a GPU: ResNet-110, the full set, K = 4/8/16, e2e / VanGL / TRGL.

The paper's recipe (configs/paper.toml: parallel regime, SGD lr 0.003, weight decay 2e-4, label
smoothing 0.1, orthogonal init, batch 256, tau 0.5 then 1) and its Table 3 setting (parallel,
the last module's accuracy). Runs in priority order (e2e, then K = 4, 8, 16; TRGL before VanGL)
within a wall-time budget: a run is started only if the median of the runs so far fits in what
is left, and one still going at the deadline is stopped after its current step (SIGTERM, the
trainer's own clean stop) and written to ``cut.jsonl``, not ``runs.jsonl``. Finished runs are
rows of ``runs.jsonl`` (the rows of ``run.py fashionmnist``, so ``report.py fashionmnist --results DIR``
reads them) and are skipped on a rerun; they go to ``results/paper_scale/`` with ``--record``.

The data travel with the working tree: copy Debian's four files next to it and pass --data-dir,
    mkdir -p shared/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz shared/fashion-mnist/
    python benchmarks/accuracy/fashionmnist/paper_scale.py --data-dir shared/fashion-mnist --budget-s 480 --record
    python benchmarks/accuracy/report.py fashionmnist --results benchmarks/accuracy/fashionmnist/results/paper_scale
A tiny CPU version (what tests/test_accuracy_study.py runs):
    python benchmarks/accuracy/fashionmnist/paper_scale.py --model resnet20 --ks 2 --epochs 1 \\
        --fraction 0.01 --set '{"model_options": {"width": 4}}' --device cpu --budget-s 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # benchmarks/accuracy: the harness and the study

import study_fashionmnist as study  # noqa: E402
import torch  # noqa: E402
from _study import append_row, read_rows  # noqa: E402
from run import run_cell, with_overrides  # noqa: E402
from study_fashionmnist import cell  # noqa: E402

from _common import add_output_args, command, machine, output_folder  # noqa: E402

from edgetrgl.training.trainer import Interrupted  # noqa: E402


def grid(model: str, fraction: float, ks: list[int], methods: list[str], seeds: int, epochs: int,
         regime: str) -> list[dict]:
    """Seed-major; inside a seed e2e first, then each K in order with the methods in the order given."""
    cells = []
    for seed in range(seeds):
        if "e2e" in methods:
            cells.append(cell("paper_scale", seed, model=model, fraction=fraction, method="e2e", recipe_name="paper",
                              epochs=epochs))
        cells += [cell("paper_scale", seed, model=model, fraction=fraction, regime=regime, k=k, method=m,
                       recipe_name="paper", epochs=epochs) for k in ks for m in methods if m != "e2e"]
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--budget-s", type=float, required=True, help="wall-time budget of the whole call, seconds")
    parser.add_argument("--data-dir", help="folder with the four Fashion-MNIST files (default: found by edgetrgl)")
    parser.add_argument("--model", default="resnet110")
    parser.add_argument("--fraction", type=float, default=1.0, help="stratified fraction of the training set")
    parser.add_argument("--ks", default="4,8,16", help="module counts, comma-separated")
    parser.add_argument("--methods", default="e2e,trgl-tau1,vangl", help="trgl-tau1 is the paper's TRGL (tau 0.5 then 1)")
    parser.add_argument("--regime", default="parallel", help="the paper's Table 3 trains in parallel")
    parser.add_argument("--epochs", type=int, default=30, help="epochs in total (parallel and e2e)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto: cuda where there is one")
    parser.add_argument("--set", type=json.loads, default={}, metavar="JSON", help="extra TrainConfig fields")
    add_output_args(parser)  # --record: results/paper_scale/; neither: a temporary folder
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run of every code path (ResNet-20 width 4, 1%% of the data, K=2, 1 epoch): the "
                             "CPU check of benchmarks/gpu/run.sh --quick")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.ks, args.epochs, args.fraction = "resnet20", "2", 1, 0.01
        args.methods, args.set = "trgl-tau1", {"model_options": {"width": 4}, **args.set}
    deadline = time.monotonic() + args.budget_s
    cells = grid(args.model, args.fraction, [int(k) for k in args.ks.split(",")], args.methods.split(","),
                 args.seeds, args.epochs, args.regime)
    cells = with_overrides(cells, {"device": args.device, **args.set})
    results = output_folder(args, HERE / "results" / "paper_scale") or Path(tempfile.mkdtemp(prefix="paper-scale-"))
    log = results / "runs.jsonl"
    done = {r["id"] for r in read_rows(log) if "id" in r}
    todo = [c for c in cells if c["id"] not in done]
    print(f"{len(todo)} run(s) to do in {args.budget_s:.0f} s; finished rows go to {log}", file=sys.stderr)
    append_row(results / "sessions.jsonl", {"command": command(), "machine": machine(), "runs": len(todo),
                                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
    # Past the deadline, SIGTERM every few seconds: inside training the trainer stops after its current
    # step (Interrupted); outside it (loading, estimating) our handler only notes it, the loop stops.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    done_event = threading.Event()

    def nag() -> None:
        if not done_event.wait(max(0.0, args.budget_s)):
            while not done_event.wait(0.0 if not stop.is_set() else 5.0):
                os.kill(os.getpid(), signal.SIGTERM)
                stop.set()

    timer = threading.Thread(target=nag, daemon=True)
    timer.start()
    cache, walls, finished = {}, [], 0
    try:
        for i, c in enumerate(todo, 1):
            left = deadline - time.monotonic()
            typical = sorted(walls)[len(walls) // 2] if walls else 1.0  # no run takes under a second
            if stop.is_set() or left <= 0 or typical > left:
                print(f"stopping: {left:.0f} s left, a run takes about {typical:.0f} s", file=sys.stderr)
                break
            started = time.monotonic()
            try:
                record = run_cell(study, c, args.data_dir, cache)
            except Interrupted as stop:
                append_row(results / "cut.jsonl", {"id": c["id"], "after_s": round(time.monotonic() - started, 1),
                                                        "why": str(stop)})
                print(f"cut at the deadline: {c['id']}", file=sys.stderr)
                break
            walls.append(time.monotonic() - started)
            append_row(log, record)
            finished += 1
            print(f"[{i}/{len(todo)} {args.budget_s - (deadline - time.monotonic()):6.0f} s] {record['id']}: last "
                  f"{100 * record['last']:.1f}% in {record['wall_time_s']:.0f} s", file=sys.stderr, flush=True)
    finally:
        done_event.set()
    left = [c["id"] for c in todo[finished:]]
    print(f"finished {finished} run(s); {len(left)} left" + (f", next: {left[0]}" if left else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
