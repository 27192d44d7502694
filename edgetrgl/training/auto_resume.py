"""``--auto-resume``: one command line that is safe to run again and again (a service restarting it).

What it does depends on what the run folder holds:

    nothing (or no run files)              start the run
    checkpoint.pt, no summary.json         resume it from its last checkpoint
    summary.json                           finished: print its results, touch nothing, succeed
    only config.json / metrics.jsonl       killed before its first checkpoint: nothing is lost, start again
    anything else (e.g. model.pt alone)    refuse, naming what is there

The decision is taken while holding the folder's write lock (see run_lock.py), so two copies of the
same command cannot both start or both resume the run: the second is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from edgetrgl.config import TrainConfig
from edgetrgl.errors import UserError
from edgetrgl.heads import HeadFactory
from edgetrgl.models import BlockNet
from edgetrgl.training.results import RunResult, load_run, print_result
from edgetrgl.training.run import resume_in_process, runs_on_ranks, train_in_process
from edgetrgl.training.run_dir import RUN_FILES, agreed_changes, read_json
from edgetrgl.training.run_lock import hold_run_dir

NEW, UNFINISHED, FINISHED, NO_CHECKPOINT = "new", "unfinished", "finished", "no checkpoint"
FLAG = "--auto-resume"


def run_state(run_dir: str | Path) -> str:
    """What a run folder holds: ``new``, ``unfinished``, ``finished`` or ``no checkpoint``.

    Raises:
        UserError: it holds run files that fit none of these (say, ``model.pt`` alone).
    """
    path = Path(run_dir)
    present = sorted(name for name in RUN_FILES if (path / name).exists())
    if "summary.json" in present:
        return FINISHED
    if "checkpoint.pt" in present:
        return UNFINISHED
    if not present:
        return NEW
    if set(present) <= {"config.json", "metrics.jsonl"}:
        return NO_CHECKPOINT
    raise UserError(f"{path} holds {', '.join(present)} but neither checkpoint.pt nor summary.json: {FLAG} cannot "
                    f"tell what to continue; move them away, or start again with --out {path} --overwrite")


def train_or_resume(cfg: TrainConfig | None = None, *, out: str | Path | None = None,
                    changes: dict[str, Any] | None = None, model: BlockNet | None = None, data: tuple | None = None,
                    quiet: bool = False, console: Console | None = None,
                    head_factory: HeadFactory | None = None) -> RunResult:
    """Start, resume or report the run in ``out``, whichever its folder calls for (see the module doc).

    Args:
        cfg: the configuration (default ``TrainConfig()``).
        out: the run folder (default ``cfg.out``).
        changes: the settings the user gave, checked against a saved run as ``resume`` checks them
            (default: every field of ``cfg`` that differs from ``TrainConfig()``).
        model, data, quiet, console, head_factory: as for :func:`edgetrgl.train`.

    Returns:
        The :class:`RunResult`: of the run trained now, or of the finished run as :func:`load_run` reads it.

    Raises:
        UserError: no run folder, a setting contradicting the saved run, or a folder of unknown content.
        RunDirLocked: another process is writing into ``out``.
    """
    cfg = cfg or TrainConfig()
    out = cfg.out if out is None else out
    if runs_on_ranks(cfg):  # each rank would take the folder's lock: torchrun restarts the ranks instead
        raise UserError(f"{FLAG} is for one process; under torchrun, --max-restarts resumes the run")
    if not out:
        raise UserError(f"{FLAG} needs a run folder (--out)")
    if changes is None:
        default = TrainConfig().to_dict()
        changes = {k: v for k, v in cfg.to_dict().items() if k != "out" and v != default[k]}
    console = console or Console(stderr=True)
    run_dir = Path(out)
    if run_dir.is_dir() and run_state(run_dir) == FINISHED:  # a reader: no lock, nothing written
        return _finished(run_dir, changes, model, head_factory, quiet, console)
    options = dict(model=model, data=data, quiet=quiet, console=console, head_factory=head_factory)
    with hold_run_dir(run_dir):
        state = run_state(run_dir)  # again, under the lock: another process may have moved it on
        if state == FINISHED:
            return _finished(run_dir, changes, model, head_factory, quiet, console)
        if state == UNFINISHED:
            if (run_dir / "config.json").exists():  # checked here to name --auto-resume in the message
                agreed_changes(TrainConfig.from_dict(read_json(run_dir / "config.json")["config"]), changes, FLAG)
            return resume_in_process(run_dir, changes=changes, **options)
        if state == NO_CHECKPOINT and not quiet:
            console.print(f"{run_dir} holds no checkpoint yet (the run was stopped before its first one): starting again")
        return train_in_process(cfg, out=run_dir, overwrite=state == NO_CHECKPOINT, **options)


def _finished(run_dir: Path, changes: dict[str, Any], model: BlockNet | None, head_factory: HeadFactory | None,
              quiet: bool, console: Console) -> RunResult:
    """A finished run: check the settings agree, print its results (as the run printed them), return
    it as load_run reads it."""
    agreed_changes(TrainConfig.from_dict(read_json(run_dir / "summary.json")["config"]), changes, FLAG)
    result = load_run(run_dir, model, head_factory)
    if not quiet:
        print_result(console, result, heading=f"the run in {run_dir} has already finished: ")
    return result
