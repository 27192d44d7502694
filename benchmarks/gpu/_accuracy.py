"""The accuracy step: issue 19's paper-scale Fashion-MNIST run (ResNet-110, K = 4/8/16), in the time left.

``benchmarks/accuracy/fashionmnist/paper_scale.py`` (helper fmnist's) is called, if this tree has it, as

    python benchmarks/accuracy/fashionmnist/paper_scale.py --device DEV --budget-s SECONDS --out DIR \\
        [--data-dir DIR] [--quick]

with each flag passed only if its ``--help`` names it (the wall-time flag may also be spelled
``--time-budget-s`` or ``--wall-budget-s``). The Fashion-MNIST files are looked up in
``$FASHION_MNIST_DIR``, then ``data-local/fashion-mnist`` (an untracked, not ignored, folder of this
tree, so the GPU machine's copy of the tree carries it: see run.sh's header). Its outputs land in
``<results>/<name>-accuracy/`` and are listed in the JSON.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

SCRIPT = Path("benchmarks") / "accuracy" / "fashionmnist" / "paper_scale.py"
BUDGET_FLAGS = ("--budget-s", "--time-budget-s", "--wall-budget-s")


def data_dir(root: Path) -> Path | None:
    """Where the Fashion-MNIST files are, if anywhere this run can see."""
    for candidate in (os.environ.get("FASHION_MNIST_DIR"), root / "data-local" / "fashion-mnist"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def run_accuracy(run) -> None:
    p = run.profile
    section: dict[str, Any] = {"script": str(SCRIPT)}
    run.results["accuracy"] = section
    script = run.root / SCRIPT
    if not script.exists():
        section.update(status="skipped", reason=f"{SCRIPT} is not in this tree (issue 19, helper fmnist)")
        run.log(f"accuracy: skipped ({SCRIPT} does not exist)")
        return
    budget_s = run.part_deadline - time.monotonic() - 15.0  # room to write its results
    if budget_s < p.accuracy_min_s:
        section.update(status="skipped", reason=f"{budget_s:.0f} s left, under the {p.accuracy_min_s:.0f} s minimum")
        run.log(f"accuracy: skipped ({section['reason']})")
        return
    try:
        helptext = subprocess.run([run.python, str(script), "--help"], capture_output=True, text=True, timeout=60,
                                  cwd=run.root).stdout
    except subprocess.TimeoutExpired:
        helptext = ""
    budget_flag = next((f for f in BUDGET_FLAGS if f in helptext), None)
    if budget_flag is None:
        section.update(status="failed", reason=f"{SCRIPT} --help names no wall-time flag ({', '.join(BUDGET_FLAGS)})")
        run.failures.append(f"accuracy: {section['reason']}")
        return
    out = run.json_path.parent / f"{run.json_path.stem}-accuracy"
    args = [budget_flag, f"{budget_s:.0f}"]
    for flag, value in (("--device", run.device), ("--out", str(out))):
        if flag in helptext:
            args += [flag, value]
    data = data_dir(run.root)
    if data is not None and "--data-dir" in helptext:
        args += ["--data-dir", str(data)]
    if p.name == "quick" and "--quick" in helptext:
        args.append("--quick")
    section.update(args=args, budget_s=round(budget_s), data_dir=str(data) if data else None,
                   concurrent_with="the CUDA tests (tiny models, the same GPU)" if run.tests_running else None)
    started = time.perf_counter()
    try:
        proc = subprocess.run([run.python, str(script), *args], capture_output=True, text=True, cwd=run.root,
                              timeout=budget_s + 60)
    except subprocess.TimeoutExpired:
        proc = None
    section["wall_s"] = round(time.perf_counter() - started, 1)
    if proc is None:
        section["status"] = "timed out"
        run.failures.append(f"accuracy: {SCRIPT} ran past its budget of {budget_s:.0f} s by a minute")
        return
    section.update(exit_code=proc.returncode, stdout_tail=proc.stdout.strip().splitlines()[-20:],
                   stderr_tail=proc.stderr.strip().splitlines()[-5:],
                   outputs=sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file()) if out.exists() else [])
    section["status"] = "done" if proc.returncode == 0 else "failed"
    if proc.returncode != 0:
        run.failures.append(f"accuracy: {SCRIPT} exit {proc.returncode}: "
                            f"{section['stderr_tail'][-1] if section['stderr_tail'] else 'no message'}")
    run.log(f"accuracy: {SCRIPT} exit {proc.returncode}, {len(section['outputs'])} file(s) in {out.name} "
            f"[{section['wall_s']:.0f} s]")
