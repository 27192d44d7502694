"""Fault injection for the crash tests: die with SIGKILL, or stall, at a named point the Nth time it is reached.

``EDGETRGL_CRASH_AT="step:7"`` kills the process at the 7th training step; other points are
``cache_write``, ``checkpoint_write`` (half a checkpoint file written), ``checkpoint_rename``
(file complete, not yet renamed into place) and ``results`` (a torchrun run's summary.json written, the
group not yet ended). ``EDGETRGL_STALL_AT="step:6"`` instead prints
``edgetrgl fault: stalled at step:6`` on stderr and sleeps until killed: a run that is reliably still
running, for the tests of the run-folder lock. ``EDGETRGL_TERM_AT="evaluate:2"`` sends the process a
SIGTERM there (as ``systemctl stop`` would, at that instant); ``evaluate`` is reached once per test
batch scored. ``EDGETRGL_FAULT_COUNTS=FILE`` writes how often each point was reached to FILE (JSON) when
the process exits: benchmarks/chaos.py draws its faults from those counts. Unset, this costs five
dictionary lookups.
Under torchrun, ``EDGETRGL_CRASH_RANK=1`` limits the crash to rank 1, and only the first attempt
crashes (torchrun counts restarts in ``TORCHELASTIC_RESTART_COUNT``), so a restarted run goes on.
``EDGETRGL_OOM_AT="step:2"`` runs out of memory there: on a GPU a real allocation the caching allocator
cannot satisfy (a petabyte), elsewhere a raised ``torch.OutOfMemoryError`` (benchmarks/gpu's OOM check).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time

_counts: dict[str, int] = {}
_counting = False


def crash_point(name: str) -> None:
    crash, stall = os.environ.get("EDGETRGL_CRASH_AT"), os.environ.get("EDGETRGL_STALL_AT")
    term, counts = os.environ.get("EDGETRGL_TERM_AT"), os.environ.get("EDGETRGL_FAULT_COUNTS")
    oom = os.environ.get("EDGETRGL_OOM_AT")
    if not crash and not stall and not term and not counts and not oom:
        return
    if counts:
        _write_counts_at_exit(counts)
    rank = os.environ.get("EDGETRGL_CRASH_RANK")
    if rank is not None and (os.environ.get("RANK", "0") != rank or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"):
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _reached(crash, name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _reached(oom, name):
        _run_out_of_memory()
    if _reached(term, name):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag: the loop stops at its next step
    if _reached(stall, name):
        print(f"edgetrgl fault: stalled at {stall}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def _reached(spec: str | None, name: str) -> bool:
    if not spec:
        return False
    point, _, nth = spec.partition(":")
    return point == name and _counts[name] == int(nth or 1)


def _run_out_of_memory() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda")  # raises torch.OutOfMemoryError
    raise torch.OutOfMemoryError("out of memory (injected by EDGETRGL_OOM_AT)")


def _write_counts_at_exit(path: str) -> None:
    global _counting
    if not _counting:
        _counting = True
        if "RANK" in os.environ:  # torchrun: one file per rank
            path = f"{path}.rank{os.environ['RANK']}"
        atexit.register(lambda: open(path, "w").write(json.dumps(_counts)))
