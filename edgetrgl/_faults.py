"""Fault injection for the crash tests: die with SIGKILL at a named point, the Nth time it is reached.

``EDGETRGL_CRASH_AT="step:7"`` kills the process at the 7th training step; other points are
``cache_write``, ``checkpoint_write`` (half a checkpoint file written) and ``checkpoint_rename``
(file complete, not yet renamed into place). Unset, this costs one dictionary lookup.
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
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
