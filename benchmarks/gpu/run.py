"""GPU validation: run every CUDA path on a real GPU and measure the paper's setting with the allocator and NVML.

    bash benchmarks/gpu/run.sh                         # a CUDA GPU: about 5 minutes on an H100
    bash benchmarks/gpu/run.sh --device cpu --quick    # the same steps at a tiny size, on the CPU (CI)

1. pytest on every test marked ``cuda`` (tests/test_gpu.py; they skip without a GPU);
2. ResNet-110, 3x96x96, batch 64, synthetic data: e2e, checkpointing, offloading, and parallel and
   sequential TRGL at K = 4, 8, 16 (equal and balanced split), each in a fresh process: MemTracker's
   tensor peak, ``max_memory_allocated``, ``max_memory_reserved``, NVML's process and device memory,
   time per sample, and the fake-tensor estimate beside each;
3. the budget held: sequential training under ``--budget 2GiB`` stays under it (``max_memory_reserved``
   from the run's summary.json); e2e under the same budget is refused in one line, exit 2;
4. ``edgetrgl train`` (bundled data) and ``--cache disk``: wall time on the GPU vs the CPU;
5. ``results/gpu-<name>.json`` and ``.md`` (or ``cpu-quick``), rewritten after every item, so a run cut
   short still leaves what it measured. ``--budget-s`` is a deadline: items left when it passes are
   recorded as skipped.

``--device cpu`` without ``--quick`` is refused: ResNet-110 at 96x96 takes minutes per step there.
Exit code: 0 when every check passed, 1 when one failed (listed in the JSON's ``failures``), 2 for
bad arguments or ``--device cuda`` without a GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "benchmarks"))  # _common.py

from _memory import run_memory  # noqa: E402
from _nvml import Nvml  # noqa: E402
from _report import markdown  # noqa: E402
from _runs import run_budget, run_tests, run_walltime  # noqa: E402


@dataclass(frozen=True)
class Profile:
    """What one run measures. ``FULL`` is the paper's setting; ``QUICK`` the same steps in seconds."""

    name: str
    model: str
    image_size: int
    batch_size: int
    pairs: tuple[tuple[int, str], ...]  # (K, split) of our methods; the first also gives the baselines' estimate
    baselines: tuple[str, ...]  # besides e2e
    steps: int
    warmup: int
    budget: str  # step 3
    budget_modules: int
    budget_num_train: int
    train_args: tuple[str, ...]  # step 4, added to the default `edgetrgl train`
    deadline_s: float  # default --budget-s
    reserve_s: float  # kept for steps 3 and 4 when step 2 runs long
    model_options: dict[str, Any] = field(default_factory=dict)
    budget_cpu_only: bool = False
    train_toml: str = ""  # step 4: a config file for `edgetrgl train`, if any (quick: a narrower model)

    def setting_dict(self, device: str) -> dict[str, Any]:
        return {"model": self.model, "model_options": self.model_options, "input": [3, self.image_size, self.image_size],
                "batch_size": self.batch_size, "data": "synthetic (random tensors)", "device": device,
                "steps": self.steps, "warmup": self.warmup, "optimizer": "SGD momentum 0.9, fp32"}

    def budget_toml(self) -> str:
        """The budget run's config: this profile's model on synthetic data of the same shape."""
        lines = [f'model = "{self.model}"', 'dataset = "synthetic"', "", "[model_options]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in self.model_options.items()]
        lines += ["", "[dataset_options]", f"image_size = {self.image_size}",
                  f"num_train = {self.budget_num_train}", f"num_test = {max(self.batch_size, self.budget_num_train // 4)}"]
        return "\n".join(lines) + "\n"


FULL = Profile(
    name="full", model="resnet110", image_size=96, batch_size=64,
    pairs=((4, "equal"), (8, "equal"), (16, "equal"), (4, "balanced"), (8, "balanced"), (16, "balanced")),
    baselines=("checkpoint", "offload"), steps=3, warmup=1,
    budget="2GiB", budget_modules=8, budget_num_train=640, train_args=(), deadline_s=420, reserve_s=110)

QUICK = Profile(
    name="quick", model="resnet20", model_options={"width": 4}, image_size=16, batch_size=16,
    pairs=((2, "equal"), (4, "balanced")), baselines=("checkpoint",), steps=2, warmup=1,
    budget="1.3MiB", budget_modules=4, budget_num_train=64, budget_cpu_only=True,
    train_args=("--train-fraction", "0.05", "--epochs", "1"), train_toml="[model_options]\nwidth = 4\n",
    deadline_s=300, reserve_s=30)

PAPER = {4: 0.76, 8: 0.52, 16: 0.40}  # parallel TRGL / e2e, nvidia-smi on a V100 (16: "about 60% saved")


class Run:
    """The state of one validation run: profile, device, deadline, results, and where they are written."""

    def __init__(self, args: argparse.Namespace, profile: Profile, workdir: Path) -> None:
        self.profile, self.device, self.workdir, self.root = profile, args.device, workdir, ROOT
        self.python = sys.executable
        self.started = time.monotonic()
        self.deadline = self.started + (args.budget_s if args.budget_s is not None else profile.deadline_s)
        self.nvml = Nvml()
        self.failures: list[str] = []
        name = "cpu-quick" if args.device == "cpu" else f"gpu-{_slug(self.nvml.info().get('gpu') or 'unknown')}"
        if args.device == "cuda" and args.quick:
            name += "-quick"
        out = Path(args.out)
        self.json_path, self.md_path = out / f"{name}.json", out / f"{name}.md"
        self.results: dict[str, Any] = {"name": name, "profile": profile.name, "command": _command(),
                                        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                        "machine": _machine(self.nvml, args.device), "paper": PAPER}

    def log(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {message}", file=sys.stderr, flush=True)

    def save(self) -> None:
        """Rewrite the JSON and the markdown (atomically: a reader never sees half a file)."""
        self.results["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.results["failures"] = list(self.failures)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        for path, text in ((self.json_path, json.dumps(self.results, indent=2) + "\n"),
                           (self.md_path, markdown(self.results))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="default cuda")
    parser.add_argument("--quick", action="store_true", help="tiny model and matrix: the CI run (about a minute)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the JSON and markdown")
    parser.add_argument("--budget-s", type=float, help="overall deadline in seconds (default 420; --quick 300)")
    parser.add_argument("--only", help="comma-separated steps to run (tests,memory,budget,walltime; default all): "
                                       "a re-run of some steps writes its own results file (suffix -only-...)")
    parser.add_argument("--keep-runs", action="store_true", help="keep the training runs' folders (printed at the end)")
    args = parser.parse_args(argv)
    if args.device == "cpu" and not args.quick:
        print("run.py: error: --device cpu measures ResNet-110 at 96x96, minutes per step: add --quick", file=sys.stderr)
        return 2
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("run.py: error: --device cuda: no CUDA GPU is available (use --device cpu --quick)", file=sys.stderr)
        return 2
    if args.budget_s is not None and args.budget_s <= 0:
        print(f"run.py: error: --budget-s must be positive, got {args.budget_s}", file=sys.stderr)
        return 2
    if args.device == "cpu":  # every child: one torch thread (2 threads on a busy 2-core CI machine spin-wait)
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    every = {"tests": run_tests, "memory": run_memory, "budget": run_budget, "walltime": run_walltime}
    names = [n.strip() for n in (args.only or ",".join(every)).split(",") if n.strip()]
    unknown = [n for n in names if n not in every]
    if unknown or not names:
        print(f"run.py: error: --only takes {','.join(every)}; got {args.only!r}", file=sys.stderr)
        return 2
    steps = [every[n] for n in every if n in names]
    workdir = Path(tempfile.mkdtemp(prefix="edgetrgl-gpu-bench-"))
    try:
        run = Run(args, QUICK if args.quick else FULL, workdir)
        if args.only:  # a partial re-run must not overwrite the full results
            suffix = "-only-" + "-".join(n for n in every if n in names)
            run.json_path = run.json_path.with_name(run.json_path.stem + suffix + ".json")
            run.md_path = run.md_path.with_name(run.md_path.stem + suffix + ".md")
        run.log(f"GPU validation, {run.profile.name} profile, device {run.device}; results: {run.json_path}")
        run.save()
        for step in steps:
            step(run)
            run.save()
        run.log(f"done in {time.monotonic() - run.started:.0f} s: {run.json_path} and {run.md_path.name}"
                + (f"; {len(run.failures)} check(s) failed" if run.failures else "; every check passed"))
        for failure in run.failures:
            run.log(f"FAILED: {failure}")
        return 1 if run.failures else 0
    finally:
        if args.keep_runs:
            print(f"training runs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _machine(nvml: Nvml, device: str) -> dict[str, Any]:
    """Versions and machine, without creating a CUDA context in this process (NVML gives the GPU's facts)."""
    import torch

    from edgetrgl.bench.setting import versions

    info = versions("cpu")
    info.update(nvml.info())
    info.update(device=device, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if device == "cuda" else None,
                edgetrgl_commit=_git_commit())
    return info


def _git_commit() -> str:
    from _common import _git_commit as commit  # benchmarks/_common.py

    return commit()


def _command() -> str:
    args = shlex.join(sys.argv[1:])
    via = os.environ.get("EDGETRGL_GPU_BENCH_WRAPPER")  # set by run.sh
    return f"bash {via} {args}".strip() if via else f"python benchmarks/gpu/run.py {args}".strip()


def _slug(name: str) -> str:
    """"NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


if __name__ == "__main__":
    sys.exit(main())
