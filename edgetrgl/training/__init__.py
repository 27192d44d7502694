"""Training: the regimes (``regimes/``), the trainer, the one run body, the run folder, the Python API.

    results.py, loading.py   RunResult, load_run, summaries; the data and the user's heads
    regimes/, trainer.py     the loops and the state they share
    run.py                   the one run body (one process, or a torchrun rank through its hooks)
    api.py, auto_resume.py   the front door: train, resume, --auto-resume

The API names below load on first use, so that the lower layers here (the epoch bookkeeping, the
cache inputs, the offloader) can be imported by the regimes without pulling in the API above them.
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
