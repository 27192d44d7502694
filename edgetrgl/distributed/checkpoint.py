"""Checkpoints across ranks: every rank writes its part, then rank 0 commits them.

    <run>/checkpoint-000007.rank0.pt   rank 0's modules, optimizers and position at checkpoint 7
    <run>/checkpoint-000007.rank1.pt   rank 1's part (written atomically: temporary file + rename)
    <run>/checkpoint.commit.json       {"serial": 7, "world_size": 2, ...}: written last, atomically

A checkpoint counts only when the commit marker names it and every rank's part exists. Parts of
the committed checkpoint stay until the next one is committed, so a crash at any instant (some
ranks have written part 8, the marker still says 7) leaves checkpoint 7 complete.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch.distributed as dist

from edgetrgl.errors import UserError
from edgetrgl.training.checkpoint import load_checkpoint, save_checkpoint
from edgetrgl.training.run_dir import write_json

COMMIT = "checkpoint.commit.json"
_PART = re.compile(r"^checkpoint-(\d+)\.rank(\d+)\.pt$")


def part_name(serial: int, rank: int) -> str:
    return f"checkpoint-{serial:06d}.rank{rank}.pt"


def save_distributed(run_dir: Path, serial: int, state: dict[str, Any], info: dict[str, Any]) -> None:
    """Collective: write this rank's part of checkpoint ``serial``; rank 0 commits it once all have.

    Args:
        run_dir: the run folder (shared by all ranks).
        serial: the checkpoint's number, increasing.
        state: this rank's state (CPU tensors).
        info: facts the marker records (regime, layout), for resume to check.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    save_checkpoint(run_dir, state, name=part_name(serial, rank))
    dist.barrier()  # every part of `serial` is on disk
    if rank == 0:
        write_json(run_dir / COMMIT, {"serial": serial, "world_size": world, **info})
        prune(run_dir, rank, keep_from=serial)
    else:
        prune(run_dir, rank, keep_from=serial - 1)  # marker `serial` may not be written yet


def read_commit(run_dir: Path) -> dict[str, Any] | None:
    """The commit marker of a distributed run folder, or None if it has none."""
    path = Path(run_dir) / COMMIT
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable ({type(exc).__name__}): the run cannot be resumed") from None


def load_distributed(run_dir: Path, rank: int, world_size: int) -> dict[str, Any]:
    """This rank's part of the last complete checkpoint.

    Raises:
        UserError: no committed checkpoint, a part missing, or another world size (parts are cut
            by rank, and a pipeline's layout depends on the number of ranks: no re-sharding).
    """
    commit = read_commit(run_dir)
    if commit is None:
        raise UserError(f"no committed distributed checkpoint in {run_dir}: nothing to resume")
    if commit["world_size"] != world_size:
        raise UserError(f"the run in {run_dir} was saved by {commit['world_size']} ranks and is resumed by "
                        f"{world_size}: resume with --nproc-per-node {commit['world_size']} (no re-sharding)")
    missing = [r for r in range(world_size) if not (Path(run_dir) / part_name(commit["serial"], r)).exists()]
    if missing:
        raise UserError(f"checkpoint {commit['serial']} in {run_dir} lacks the part(s) of rank(s) "
                        f"{', '.join(map(str, missing))}: it cannot be resumed")
    return load_checkpoint(Path(run_dir), name=part_name(commit["serial"], rank))


def remove_all(run_dir: Path) -> None:
    """Delete every part and the marker (a run folder being overwritten)."""
    (Path(run_dir) / COMMIT).unlink(missing_ok=True)
    for path in Path(run_dir).glob("checkpoint-*.rank*.pt*"):
        path.unlink(missing_ok=True)


def prune(run_dir: Path, rank: int, keep_from: int) -> None:
    """Remove this rank's parts older than ``keep_from`` (each rank its own: works on node-local disks)."""
    for path in Path(run_dir).glob(f"checkpoint-*.rank{rank}.pt"):
        match = _PART.match(path.name)
        if match and int(match.group(1)) < keep_from:
            path.unlink(missing_ok=True)
