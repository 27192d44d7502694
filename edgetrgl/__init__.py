"""edgetrgl: module-wise training with transport regularization (TRGL) under a memory budget.

    import edgetrgl
    result = edgetrgl.train(edgetrgl.TrainConfig(model="resnet20", modules=4, epochs=2))
    print(result.best_module)

The names below are imported on first use: importing the package (which ``edgetrgl.cli.main``, the
console script, does first) loads no torch, so the CLI installs its stop handlers before the seconds
torch takes to import, and a Ctrl-C or SIGTERM then is honoured too (it used to end in a traceback).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edgetrgl._version import __version__

# name -> the module that defines it
_EXPORTS = {
    "ResidualBlock": "edgetrgl.blocks",
    "TrainConfig": "edgetrgl.config", "format_bytes": "edgetrgl.config", "parse_size": "edgetrgl.config",
    "list_datasets": "edgetrgl.data", "load_dataset": "edgetrgl.data", "make_loader": "edgetrgl.data",
    "UserError": "edgetrgl.errors",
    "export_run": "edgetrgl.export", "predict": "edgetrgl.export",
    "BlockNet": "edgetrgl.models", "create_model": "edgetrgl.models", "list_models": "edgetrgl.models",
    "ModularNet": "edgetrgl.modular", "build_modular": "edgetrgl.modular", "split_blocks": "edgetrgl.modular",
    "RunResult": "edgetrgl.api", "build_network": "edgetrgl.api", "evaluate": "edgetrgl.api",
    "load_run": "edgetrgl.api", "resume": "edgetrgl.api", "train": "edgetrgl.api",
}

if TYPE_CHECKING:
    from edgetrgl.api import RunResult, build_network, evaluate, load_run, resume, train
    from edgetrgl.blocks import ResidualBlock
    from edgetrgl.config import TrainConfig, format_bytes, parse_size
    from edgetrgl.data import list_datasets, load_dataset, make_loader
    from edgetrgl.errors import UserError
    from edgetrgl.export import export_run, predict
    from edgetrgl.models import BlockNet, create_model, list_models
    from edgetrgl.modular import ModularNet, build_modular, split_blocks

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """An exported name, or a submodule (``edgetrgl.config``), imported now and kept."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif not name.startswith("__"):
        try:
            value = importlib.import_module(f"edgetrgl.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"edgetrgl.{name}":
                raise
            raise AttributeError(f"module 'edgetrgl' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'edgetrgl' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
