"""Read what ``--init-from`` points at: a run folder, a run's ``model.pt``, or a torchvision state dict."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgetrgl.errors import UserError
from edgetrgl.weights_file import NotAWeightsFile, load_weights_file

_TORCHVISION_BLOCK = re.compile(r"^layer[1-4]\.\d+\.")
NOT_WEIGHTS = "not an edgetrgl checkpoint or a state dict"


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
            raise UserError(f"--init-from {where} is {NOT_WEIGHTS}: a folder without model.pt (a run that did "
                            f"not finish?)")
    elif not path.is_file():
        raise UserError(f"--init-from {where}: no such file or run folder")
    try:
        data = load_weights_file(path)
    except NotAWeightsFile as exc:
        raise UserError(f"--init-from {path} is {NOT_WEIGHTS}: {exc.reason}") from None
    config: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):  # edgetrgl's model.pt, or a training checkpoint
        config = (data.get("meta") or {}).get("config", {}) if isinstance(data.get("meta"), dict) else {}
        data = data["state_dict"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"--init-from {path} is {NOT_WEIGHTS}: it holds {_what(data)}, not a mapping of names "
                        f"to tensors")
    keys = list(data)
    if any(k.startswith(("stages.", "heads.")) for k in keys):
        return InitSource(path, "run", data, config)
    if any(_TORCHVISION_BLOCK.match(k) for k in keys):
        return InitSource(path, "torchvision", data)
    raise UserError(f"--init-from {path}: its keys ({keys[0]}, ...) are neither an edgetrgl run's nor a torchvision "
                    f"ResNet's")


def _what(data: Any) -> str:
    """What a loaded file holds, in a few words: "an empty dict", "a list", "a dict of int values"."""
    if isinstance(data, dict):
        if not data:
            return "an empty dict"
        odd = next(v for v in data.values() if not isinstance(v, torch.Tensor))
        return f"a dict with {type(odd).__name__} values"
    return f"a {type(data).__name__}"
