"""How long planning takes before a run starts, or before an infeasible budget is refused.

Each case plans in a fresh process (the first fake-tensor estimate imports torch._dynamo and fills
caches: a warm process would hide that cost) and times ``plan_run``, the whole of planning as a run
does it: the machine measured, the footprint (with a device profile), the plan. Loading the data is
not timed. Targets on this machine: under 10 s to refuse, under 30 s to plan (wall-clock; the CPU
time of the planning process is reported beside it).

    python benchmarks/planning_time.py            # prints the table
    python benchmarks/planning_time.py --record   # also writes benchmarks/results/planning_time.{md,json}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: the same script can time another checkout

from benchmarks._common import Contention, add_output_args, output_folder, table, write_results  # noqa: E402

TIGHT = "20MB"  # the default config (resnet20, mnist5k, batch 128, K=4) fits only with micro-batches here
IMAGE_SIZE = 48
# the 48-px folder on rpi4-2gb: the runtime takes ~376 MiB of the budget, and 400MB is refused as under the
# lower bound (at least 403.7 MiB); 440MB leaves ~44 MiB for tensors: it fits with micro-batches of 8
FOLDER_TIGHT = "440MB"


def cases(image_dir: str) -> list[tuple[str, dict, str]]:
    """``(name, config fields, expected outcome)``: ``plan`` or ``refuse``."""
    folder = dict(dataset="imagefolder", data_dir=image_dir, dataset_options={"image_size": IMAGE_SIZE},
                  device_profile="rpi4-2gb")
    return [("default, --budget " + TIGHT + " (feasible, tight)", dict(budget=TIGHT), "plan"),
            ("default, --budget 1MB (infeasible)", dict(budget="1MB"), "refuse"),
            # infeasible here: the runtime takes ~375 MiB of the 381 MiB, the first module's output batch alone ~18 MiB
            (f"imagefolder {IMAGE_SIZE}px, rpi4-2gb, --budget 400MB (infeasible)", dict(folder, budget="400MB"), "refuse"),
            (f"imagefolder {IMAGE_SIZE}px, rpi4-2gb, --budget 330MB (infeasible)", dict(folder, budget="330MB"), "refuse"),
            (f"imagefolder {IMAGE_SIZE}px, rpi4-2gb, --budget {FOLDER_TIGHT} (feasible, tight)",
             dict(folder, budget=FOLDER_TIGHT), "plan")]


def make_images(root: Path, per_class: int = 16, classes: int = 3) -> Path:
    """A small ImageFolder of random PNGs: ``train/<class>/*.png`` and ``test/<class>/*.png``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("test", per_class // 4)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def worker(fields: dict) -> dict:
    """Plan once in this process; returns seconds, outcome and the plan's decisions or the refusal."""
    import torch

    from edgetrgl.config import TrainConfig
    from edgetrgl.errors import UserError
    from edgetrgl.training.loading import load_data
    from edgetrgl.training.run import plan_run

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict({**fields, "out": ""}) if hasattr(TrainConfig, "from_dict") else TrainConfig(**fields)
    _, _, spec = load_data(cfg)
    started, cpu = time.perf_counter(), time.process_time()
    try:
        plan, _ = plan_run(cfg, spec)
    except UserError as exc:
        return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu, "outcome": "refuse",
                "message": str(exc)}
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu, "outcome": "plan",
            "message": f"K={plan.num_modules}, micro-batch {plan.micro_batch}, "
            f"checkpoint_blocks={plan.checkpoint_blocks}, cache {plan.cache.mode}"}


def run_case(fields: dict, timeout_s: float) -> dict:
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(fields)], capture_output=True, text=True,
                             timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "outcome": "timeout", "message": f"> {timeout_s:.0f} s (capped)"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"seconds": None, "outcome": "error", "message": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_args(parser)
    parser.add_argument("--timeout", type=float, default=300.0, help="cap per case, seconds (reported as '> N s')")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = output_folder(args)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    gauge = Contention()
    rows, records = [], []
    with tempfile.TemporaryDirectory(prefix="edgetrgl-planning-time-") as tmp:
        images = str(make_images(Path(tmp) / "images"))
        for name, fields, expected in cases(images):
            result = run_case(fields, args.timeout)
            seconds = "> %.0f" % args.timeout if result["seconds"] is None else f"{result['seconds']:.1f}"
            cpu = f"{result['cpu_seconds']:.1f}" if result.get("cpu_seconds") is not None else "-"
            target = 10 if expected == "refuse" else 30
            met = result["seconds"] is not None and result["seconds"] < target and result["outcome"] == expected
            records.append({"case": name, "expected": expected, "target_s": target, "met": met,
                            **{k: v for k, v in result.items()}, "config": {k: v for k, v in fields.items() if k != "data_dir"}})
            rows.append([name, seconds, cpu, f"< {target}", "yes" if met else "no", result["outcome"],
                         result["message"][:160]])
            print(f"{name}: {seconds} s, {result['outcome']}: {result['message'][:200]}", file=sys.stderr)
    busy = gauge.busy_cores()
    markdown = table(["case", "seconds", "CPU s", "target s", "met", "outcome", "plan or message"], rows)
    markdown += (f"\nOther processes kept {busy} cores busy on average while this ran (a shared 2-core machine): "
                 "timings are wall-clock, one thread per planning process; CPU s is the planning process's own CPU "
                 "time, which other processes do not inflate.\n")
    paths = write_results("planning_time", {"cases": records, "busy_cores_others": busy}, markdown, folder)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)


if __name__ == "__main__":
    main()
