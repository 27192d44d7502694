"""Read what ``--init-from`` points at: a run folder, a run's ``model.pt``, or a torchvision state dict."""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgetrgl.errors import UserError, first_line

_TORCHVISION_BLOCK = re.compile(r"^layer[1-4]\.\d+\.")


@dataclass
class InitSource:
    """A state dict and what it came from.

    Attributes:
        path: the file read.
        kind: ``run`` (an edgetrgl run's weights, keys ``stages.k...`` / ``heads.k...``) or
            ``torchvision`` (a torchvision ResNet, keys ``conv1``, ``layer1.0...``, ``fc``).
        state: the tensors.
        config: the run's configuration (``run`` files written by edgetrgl), else empty.
    """

    path: Path
    kind: str
    state: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)


def read_source(where: str | Path) -> InitSource:
    """Load ``--init-from``: a run folder (its ``model.pt``), or a weights file.

    Raises:
        UserError: missing, unreadable, or not a state dict edgetrgl knows how to map.
    """
    path = Path(where)
    if path.is_dir():
        path = path / "model.pt"
        if not path.is_file():
            raise UserError(f"--init-from {where}: no model.pt in this folder (the run did not finish?)")
    elif not path.is_file():
        raise UserError(f"--init-from {where}: no such file or run folder")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the one error line says it all
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise UserError(f"--init-from {path} is not a readable PyTorch weights file: {first_line(exc)}") from None
    config: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):  # edgetrgl's model.pt, or a training checkpoint
        config = (data.get("meta") or {}).get("config", {}) if isinstance(data.get("meta"), dict) else {}
        data = data["state_dict"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"--init-from {path} does not hold a state dict (a mapping of names to tensors)")
    keys = list(data)
    if any(k.startswith(("stages.", "heads.")) for k in keys):
        return InitSource(path, "run", data, config)
    if any(_TORCHVISION_BLOCK.match(k) for k in keys):
        return InitSource(path, "torchvision", data)
    raise UserError(f"--init-from {path}: its keys ({keys[0]}, ...) are neither an edgetrgl run's nor a torchvision "
                    f"ResNet's")
