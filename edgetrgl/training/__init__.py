"""Training: the regimes (``regimes/``), the trainer, the run folder, and the Python API.

The API names below load on first use, so that the lower layers here (the epoch bookkeeping, the
cache inputs, the offloader) can be imported by the regimes and the planner without pulling in the
API above them.
"""

from __future__ import annotations

import importlib

_LAZY = {"RunResult": "results", "build_network": "api", "evaluate": "api", "load_data": "loading",
         "load_run": "results", "plan_run": "run", "resume": "api", "train": "api", "Trainer": "trainer"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgetrgl.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgetrgl.training' has no attribute {name!r}")
