"""The process group: read torchrun's environment, join the rendezvous, agree on errors.

torchrun (``python -m torch.distributed.run``) starts one process per rank and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; this module only reads them.
NCCL moves tensors between GPUs, gloo between CPU processes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

from edgetrgl.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torchrun_world_size() -> int | None:
    """``WORLD_SIZE`` as torchrun sets it, or None outside torchrun."""
    value = os.environ.get("WORLD_SIZE")
    return int(value) if value else None


def restart_count() -> int:
    """How many times torchrun has restarted the workers (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)


def init_from_env(what: str, device: str = "auto", timeout_s: float = 60.0) -> DistEnv:
    """Join the process group torchrun describes.

    Args:
        what: the mode asking ("the pipeline regime"), for the error message.
        device: ``auto``, ``cpu`` or ``cuda``; with CUDA each rank takes GPU ``LOCAL_RANK``.
        timeout_s: how long to wait for the other ranks, at the rendezvous and in every collective.

    Raises:
        UserError: not started by torchrun, or the rendezvous was not reached in time.
    """
    world = torchrun_world_size()
    if world is None:
        raise UserError(f"{what} runs one process per rank: start it with torchrun, e.g. "
                        f"torchrun --nproc-per-node 2 -m edgetrgl train ...")
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise UserError("--device cuda was requested but no CUDA GPU is available (use --device cpu or auto)")
        torch.cuda.set_device(local_rank)  # NCCL needs each rank on its own GPU before it starts
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            with _c10d_log_captured():
                timeout = datetime.timedelta(seconds=timeout_s)
                dist.init_process_group(backend=backend, store=_attempt_store(rank, world, timeout), rank=rank,
                                        world_size=world, timeout=timeout)
        except (RuntimeError, TimeoutError, ValueError, KeyError) as exc:  # DistNetworkError, DistStoreError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"rank {rank} of {world} could not reach the rendezvous at {address} within "
                            f"{timeout_s:g} s ({first}); check MASTER_ADDR/MASTER_PORT or raise --dist-timeout") from None
    return DistEnv(rank, world, local_rank, torch.device("cuda", local_rank) if use_cuda else torch.device("cpu"))


_groups_started = 0


def _attempt_store(rank: int, world: int, timeout: datetime.timedelta) -> dist.Store:
    """The rendezvous store torchrun points at, under a prefix of its own for each restart.

    Why not ``init_process_group``'s ``env://``: after a restart, torchrun's agent keeps its store
    and the new workers read the old workers' gloo addresses from it (connection refused: see
    pytorch/pytorch#167288); a fresh prefix per attempt starts them from a clean slate.
    """
    global _groups_started
    _groups_started += 1  # a process may train twice (the Python API): each group its own prefix too
    agent_serves = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=rank == 0 and not agent_serves, timeout=timeout)
    return dist.PrefixStore(f"edgetrgl/attempt{restart_count()}/group{_groups_started}", store)


def shutdown() -> None:
    """Leave the process group (idempotent)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def agree(decide: Callable[[], Any]) -> Any:
    """Run ``decide`` on rank 0 and hand its result, or its UserError, to every rank.

    Decisions that read the file system or the machine (is the run folder free? which cache mode?)
    are made once, so that ranks cannot disagree, and an error ends every rank with the same line
    instead of leaving the others waiting at the next collective.
    """
    box: list[Any] = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", decide())
        except UserError as exc:
            box[0] = ("error", str(exc))
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise UserError(value)
    return value


@contextlib.contextmanager
def _c10d_log_captured():
    """Hold back what c10d's C++ logger writes to stderr while connecting (a C++ stack trace per
    retry); replay it on success, drop it on failure, where one line says what happened."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced (pytest capture): nothing to hold
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            if ok:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
