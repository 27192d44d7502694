"""Shared by the benchmark scripts: machine facts, a contention gauge, and writing results.

Every result file carries the command that made it, the versions and the machine, so a figure in
README or benchmarks/README.md can be traced to a run.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Versions and machine: platform, nproc, CPU/GPU, torch, python, date, threads."""
    from edgetrgl.bench.setting import versions

    info = versions("cuda" if torch.cuda.is_available() else "cpu")
    info.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                ram_bytes=psutil.virtual_memory().total, edgetrgl_commit=_git_commit())
    return info


def command() -> str:
    """The command line that ran this script, relative to the repository root."""
    script = os.path.relpath(sys.argv[0], Path(__file__).resolve().parent.parent)
    return shlex.join(["python", script, *sys.argv[1:]])


class Contention:
    """How many cores other processes kept busy while we ran (timings on a shared machine mislead).

    ``busy_cores()`` = (all CPU time used on the machine - this process tree's) / wall time.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.system = _system_busy()
        self.mine = _tree_cpu()

    def busy_cores(self) -> float:
        wall = max(time.perf_counter() - self.started, 1e-9)
        others = (_system_busy() - self.system) - (_tree_cpu() - self.mine)
        return round(max(0.0, others) / wall, 2)


def add_output_args(parser) -> None:
    """``--record`` (write to benchmarks/results/, the recorded figures) or ``--results DIR``; neither:
    print the results and write nothing, so a trial run never replaces what was recorded."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--record", action="store_true",
                       help=f"write the results to {RESULTS.relative_to(RESULTS.parent.parent)}/ (the recorded figures)")
    group.add_argument("--results", "--out", dest="results", metavar="DIR",
                       help="write the results to DIR instead (default: print them, write nothing)")


def output_folder(args, recorded: Path = RESULTS) -> Path | None:
    """Where the parsed ``add_output_args`` flags say results go (``recorded`` for ``--record``); None: print only."""
    if args.results:
        return Path(args.results)
    return recorded if args.record else None


def write_results(name: str, payload: dict[str, Any], markdown: str, folder: Path | None) -> tuple[Path, Path] | None:
    """Write ``<folder>/<name>.json`` and ``.md`` (with command, machine and versions); ``folder`` None
    (neither ``--record`` nor ``--results``): print the markdown and write nothing, returning None."""
    payload = {"command": command(), "machine": machine(), **payload}
    text = results_text(name, payload, markdown)
    if folder is None:
        print(text)
        print(f"({name}: not written; --record writes benchmarks/results/{name}.json and .md, --results DIR "
              f"writes them to DIR)", file=sys.stderr)
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / f"{name}.json", folder / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(text)
    return json_path, md_path


def results_text(name: str, payload: dict[str, Any], markdown: str) -> str:
    """The markdown record: a title, the payload's command, machine, versions and date, then ``markdown``."""
    m = payload["machine"]
    header = (f"Command: `{payload['command']}`  \n"
              f"Machine: {m['platform']}, {m['cpu']}, {m['nproc']} CPUs, {m['ram_bytes'] / 2**30:.0f} GiB RAM"
              f"{', GPU ' + m['gpu'] if m.get('gpu') else ''}  \n"
              f"Versions: torch {m['torch']}, Python {m['python']}, edgetrgl {m['edgetrgl_commit']}  \n"
              f"Date: {m['date']}\n\n")
    return f"# {name}\n\n" + header + markdown.rstrip() + "\n"


def mib(n: int | float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _system_busy() -> float:
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _tree_cpu() -> float:
    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    c = me.cpu_times()  # children already reaped are counted here
    return total + c.children_user + c.children_system


def commit() -> str:
    """The checkout's short commit, ``+uncommitted`` when tracked files differ from it: what a result row came from."""
    return _git_commit()


def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        # results written by a running benchmark (runs.jsonl ...) are not a change to the code that wrote them
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude,glob)benchmarks/**/results/**"], capture_output=True, text=True,
                               timeout=10, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
