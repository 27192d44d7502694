"""Fault injection for the crash tests: die with SIGKILL at a named point, the Nth time it is reached.

``EDGETRGL_CRASH_AT="step:7"`` kills the process at the 7th training step; other points are
``cache_write``, ``checkpoint_write`` (half a checkpoint file written) and ``checkpoint_rename``
(file complete, not yet renamed into place). Unset, this costs one dictionary lookup.
Under torchrun, ``EDGETRGL_CRASH_RANK=1`` limits the crash to rank 1, and only the first attempt
crashes (torchrun counts restarts in ``TORCHELASTIC_RESTART_COUNT``), so a restarted run goes on.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("EDGETRGL_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    rank = os.environ.get("EDGETRGL_CRASH_RANK")
    if rank is not None and (os.environ.get("RANK", "0") != rank or os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"):
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
