"""GPU validation: every CUDA path on a real GPU, the paper's setting measured, in one call of at most 8 minutes.

    bash benchmarks/gpu/run.sh                         # a CUDA GPU: 440 s (--budget-s), on an H100/H200
    bash benchmarks/gpu/run.sh --device cpu --quick    # the same steps at a tiny size, on the CPU (CI)

Steps, in order, each with its share of the time (``Profile.shares``; a step that ends early leaves
its time to the next ones, a step out of time stops cleanly and keeps what it measured):

1. fit: benchmarks/step_time_model.py on the device (fp32, bf16): the time model's fitted rates,
   pairs of options and of whole plans ranked right, and ``cuda_rates.json`` for edgetrgl/planning/
   (_fit.py); meanwhile the fake-tensor estimates run on the CPU in the background;
2. speed: time per sample of e2e, sequential and parallel TRGL at K = 4, 8, 16 (balanced) as the
   trainer feeds them (ResNet-110, 3x96x96, batch 64), with the plain feed and the CUDA feed
   (edgetrgl/cache/device_feed.py), and a torch.profiler summary of one module's epoch with each
   (_speed.py, feed_worker.py); the issue's target is sequential <= 1.10x e2e at K = 8;
3. memory: e2e, the baselines and ours with their step options (+ckpt, +bf16), each in a fresh process:
   MemTracker's tensor peak, ``max_memory_allocated``, ``max_memory_reserved``, NVML's process and device
   memory (the CUDA context said apart), time per sample, the fake-tensor estimate beside each; then the
   Pareto chart at one K (_memory.py);
4. budget: sequential under ``--budget 2GiB`` stays under it; e2e under it is refused in one line; an
   out-of-memory error mid-training ends in one line (_runs.py);
5. walltime: ``edgetrgl train`` (bundled data) and ``--cache disk`` on the device;
6. accuracy: issue 19's paper-scale Fashion-MNIST run in the time left (_accuracy.py);
7. tests: pytest on every test marked ``cuda`` (tiny models), beside steps 4 to 6 (their figures are
   memory, pass/fail and accuracy, not GPU timings: only 5's wall times may read a little high).

Results (with ``--record``, or in ``--results DIR``; neither: a temporary folder the log names):
``results/gpu-<name>.json`` and ``.md`` (or ``cpu-quick``), rewritten after every item, so a run
cut short still leaves what it measured, and beside them ``<stem>-pareto.png``, ``<stem>-cuda_rates.json``,
``step_time_model_cuda-<name>.json/.md`` and ``<stem>-accuracy/``.

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

from _accuracy import run_accuracy  # noqa: E402
from _common import add_output_args, output_folder  # noqa: E402
from _fit import run_fit  # noqa: E402
from _memory import Estimates, run_memory  # noqa: E402
from _nvml import Nvml  # noqa: E402
from _report import markdown  # noqa: E402
from _runs import run_budget, run_walltime, start_tests  # noqa: E402
from _schedule import step_deadlines  # noqa: E402
from _speed import run_speed  # noqa: E402

STEPS = ("fit", "speed", "memory", "budget", "walltime", "accuracy", "tests")


@dataclass(frozen=True)
class Profile:
    """What one run measures. ``FULL`` is the paper's setting; ``QUICK`` the same steps in about a minute."""

    name: str
    model: str
    image_size: int
    batch_size: int
    memory_items: tuple[tuple[str, int | None, str | None], ...]  # (method, K, split); K None: a baseline
    speed_pairs: tuple[tuple[int, str], ...]  # (K, split) of the speed step
    speed_batches: int  # batches per timed epoch
    speed_warmup: int
    profile_pair: tuple[int, str]  # the (K, split) whose module 2 is profiled
    pareto_pair: tuple[int, str]
    steps: int  # memory: timed steps per method (median)
    warmup: int
    budget: str
    budget_modules: int
    budget_num_train: int
    train_args: tuple[str, ...]  # walltime: added to the default `edgetrgl train`
    fit_args: tuple[str, ...]  # added to step_time_model.py's command
    accuracy_min_s: float  # accuracy: skipped with less time than this left
    deadline_s: float  # default --budget-s
    shares: dict[str, float]  # seconds per step (scaled to --budget-s); tests run beside accuracy
    model_options: dict[str, Any] = field(default_factory=dict)
    budget_cpu_only: bool = False
    walltime_vs_cpu: bool = True  # walltime: also run on the CPU, to compare
    train_toml: str = ""  # walltime: a config file for `edgetrgl train`, if any (quick: a narrower model)

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


B8 = (8, "balanced")
FULL = Profile(
    name="full", model="resnet110", image_size=96, batch_size=64,
    memory_items=(("e2e", None, None), ("sequential-trgl", *B8), ("parallel-trgl", *B8), ("checkpoint", None, None),
                  ("sequential-trgl+ckpt", *B8), ("sequential-trgl+bf16", *B8), ("e2e+bf16", None, None),
                  ("checkpoint+bf16", None, None), ("sequential-trgl+ckpt+bf16", *B8), ("offload", None, None),
                  ("sequential-trgl", 4, "balanced"), ("parallel-trgl", 4, "balanced"),
                  ("sequential-trgl", 16, "balanced"), ("parallel-trgl", 16, "balanced"),
                  ("sequential-trgl", 8, "equal"), ("parallel-trgl", 8, "equal")),
    speed_pairs=(B8, (4, "balanced"), (16, "balanced")), speed_batches=16, speed_warmup=2, profile_pair=B8,
    pareto_pair=B8, steps=3, warmup=1, budget="2GiB", budget_modules=8, budget_num_train=640, train_args=(),
    fit_args=(), accuracy_min_s=60, deadline_s=440, walltime_vs_cpu=False,
    shares={"fit": 55, "speed": 85, "memory": 140, "budget": 50, "walltime": 35, "accuracy": 75})

QUICK = Profile(
    name="quick", model="resnet20", model_options={"width": 4}, image_size=16, batch_size=16,
    memory_items=(("e2e", None, None), ("sequential-trgl", 4, "balanced"), ("checkpoint+bf16", None, None),
                  ("sequential-trgl+ckpt+bf16", 4, "balanced")),  # each code path once (parallel: the speed step)
    speed_pairs=((4, "balanced"),), speed_batches=3, speed_warmup=1, profile_pair=(4, "balanced"),
    pareto_pair=(4, "balanced"), steps=2, warmup=1, budget="1.3MiB", budget_modules=4, budget_num_train=64,
    budget_cpu_only=True, train_args=("--train-fraction", "0.05", "--epochs", "1"),
    train_toml="[model_options]\nwidth = 4\n", fit_args=("--quick", "--threads", "1"), accuracy_min_s=20,
    deadline_s=400, shares={"fit": 60, "speed": 60, "memory": 120, "budget": 60, "walltime": 60, "accuracy": 40})

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
        self.part_deadline = self.deadline  # the running step's deadline (main sets it per step)
        self.tests_running = False
        self.estimates = Estimates(self)
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
    parser.add_argument("--budget-s", type=float, help="overall deadline in seconds (default 440; --quick 400)")
    parser.add_argument("--only", help=f"comma-separated steps to run ({','.join(STEPS)}; default all): "
                                       "a re-run of some steps writes its own results file (suffix -only-...)")
    parser.add_argument("--keep-runs", action="store_true", help="keep the training runs' folders (printed at the end)")
    add_output_args(parser)  # neither --record nor --results: a fresh temporary folder, never benchmarks/results
    args = parser.parse_args(argv)
    args.out = str(output_folder(args) or tempfile.mkdtemp(prefix="edgetrgl-gpu-results-"))
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
    names = [n.strip() for n in (args.only or ",".join(STEPS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown or not names:
        print(f"run.py: error: --only takes {','.join(STEPS)}; got {args.only!r}", file=sys.stderr)
        return 2
    names = [n for n in STEPS if n in names]
    workdir = Path(tempfile.mkdtemp(prefix="edgetrgl-gpu-bench-"))
    run = None
    try:
        run = Run(args, QUICK if args.quick else FULL, workdir)
        if args.only:  # a partial re-run must not overwrite the full results
            suffix = "-only-" + "-".join(names)
            run.json_path = run.json_path.with_name(run.json_path.stem + suffix + ".json")
            run.md_path = run.md_path.with_name(run.md_path.stem + suffix + ".md")
        budget_s = args.budget_s if args.budget_s is not None else run.profile.deadline_s
        deadlines = step_deadlines(run.started, names, run.profile.shares, budget_s)
        run.results["shares_s"] = {n: round(deadlines[n] - run.started) for n in names}
        run.log(f"GPU validation, {run.profile.name} profile, device {run.device}; results: {run.json_path}")
        run.save()
        if "speed" in names or "memory" in names:  # fake-tensor estimates on the CPU, in the background
            run.estimates.start()
        finish_tests = None
        for name in names:
            run.part_deadline = deadlines[name]
            if name == "tests":
                continue  # started beside accuracy (below), or alone at the end
            if name in ("budget", "walltime", "accuracy") and "tests" in names and finish_tests is None:
                finish_tests = start_tests(run)  # beside the steps whose figures are not timings of the GPU's
            if time.monotonic() > run.part_deadline:
                run.results[name] = {"status": "skipped", "reason": "deadline (--budget-s) passed"}
                run.log(f"{name}: skipped (deadline)")
                continue
            run.log(f"{name}: starting")
            STEP_FUNCTIONS[name](run)
            run.save()
        if "tests" in names:
            (finish_tests or start_tests(run))()
        unfinished = run.estimates.stop()
        if unfinished:
            run.results["estimates_unfinished"] = unfinished
        run.save()
        run.log(f"done in {time.monotonic() - run.started:.0f} s: {run.json_path} and {run.md_path.name}"
                + (f"; {len(run.failures)} check(s) failed" if run.failures else "; every check passed"))
        for failure in run.failures:
            run.log(f"FAILED: {failure}")
        return 1 if run.failures else 0
    finally:
        if run is not None:
            run.estimates.stop()
        if args.keep_runs:
            print(f"training runs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


STEP_FUNCTIONS = {"speed": run_speed, "fit": run_fit, "memory": run_memory, "budget": run_budget,
                  "walltime": run_walltime, "accuracy": run_accuracy}


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
