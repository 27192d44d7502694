"""What a benchmark compares: the setting (model, input, batch, K, split, device) and the methods.

The setting is validated once, in the parent process, and travels to each fresh worker process as
JSON, together with the module boundaries resolved here (so every method uses the same plan).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgetrgl.bench.variants import BASELINES, MODULE_WISE, OPTION_NAMES, OURS, parse_method  # BASELINES, OURS re-exported
from edgetrgl.cache.activation_cache import STORAGE_DTYPES
from edgetrgl.config import NetworkConfig
from edgetrgl.data import DataSpec
from edgetrgl.errors import UserError
from edgetrgl.memory.planner import balanced_boundaries
from edgetrgl.models import BlockNet
from edgetrgl.modular import ModularNet, Stage, split_blocks
from edgetrgl.network import build_blocknet as _build_blocknet
from edgetrgl.network import build_network

SPLITS = ("equal", "balanced")


@dataclass
class BenchSetting:
    """One benchmark setting. Field names match the ``edgetrgl bench`` flags; the network fields
    (model, model_options, modules, split) are validated by the same :class:`NetworkConfig` as
    ``edgetrgl train``'s, and the network is built by the same builder."""

    model: str = "resnet20"
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    batch_size: int = 64
    modules: int = 4
    split: str = "equal"
    device: str = "cpu"  # resolved: cpu or cuda
    steps: int = 3
    warmup: int = 1
    lr: float = 0.01
    tau: float = 1.0
    seed: int = 0
    # samples whose module outputs the sequential methods' host cache holds (0: not counted); on a
    # Pi or a Jetson that cache sits in the same RAM as the training step
    cache_samples: int = 0
    cache_dtype: str = "fp32"
    model_options: dict[str, Any] = field(default_factory=dict)
    boundaries: list[int] | None = None  # resolved by resolve_boundaries(), not given by the user

    def __post_init__(self) -> None:
        self.network.validate()
        for name in ("image_size", "in_channels", "num_classes", "batch_size", "modules", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("warmup", "cache_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"--{name.replace('_', '-')} must be a non-negative integer, got {value!r}")
        if self.cache_dtype not in STORAGE_DTYPES:
            raise UserError(f"--cache-dtype must be one of {', '.join(STORAGE_DTYPES)}, got {self.cache_dtype!r}")

    @property
    def network(self) -> NetworkConfig:
        """The network fields as train's config section."""
        return NetworkConfig(model=self.model, model_options=dict(self.model_options), modules=self.modules,
                             split=self.split, boundaries=self.boundaries)

    @property
    def spec(self) -> DataSpec:
        """Random inputs of this shape (the values do not change memory or speed)."""
        return DataSpec("random", self.num_classes, self.in_channels, self.image_size, False,
                        (0.0,) * self.in_channels, (1.0,) * self.in_channels, self.batch_size, 0)

    @property
    def batch_shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, self.in_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "BenchSetting":
        return cls(**values)


def parse_methods(compare: str) -> list[str]:
    """``--compare e2e,checkpoint,sequential-trgl+ckpt`` -> the baselines to run (e2e always first), then
    ours, then the named variants with step options (see :mod:`edgetrgl.bench.variants`), canonical names.

    Raises:
        UserError: an unknown name or step option, in one line.
    """
    from edgetrgl.objectives import objective_names

    names = [n.strip() for n in compare.split(",") if n.strip()]
    ours = [f"{regime}-{objective}" for regime in MODULE_WISE for objective in objective_names()]
    unknown = [n for n in names if n.split("+")[0].strip() not in BASELINES + tuple(ours)]
    if unknown:
        raise UserError(f"--compare takes {', '.join(BASELINES)}, or parallel-/sequential-<objective> with an "
                        f"objective in {', '.join(objective_names())} (e.g. sequential-infopro), with step options "
                        f"+{', +'.join(OPTION_NAMES)} (e.g. sequential-trgl+ckpt+mb8); unknown: {', '.join(unknown)}")
    try:
        variants = [parse_method(n).name for n in names]
    except UserError as exc:
        raise UserError(f"--compare: {exc}") from None
    extra = [v for i, v in enumerate(variants) if v not in BASELINES + OURS and v not in variants[:i]]
    baselines = [b for b in BASELINES if b == "e2e" or b in variants]
    return baselines + [v for v in extra if parse_method(v).is_baseline] + list(OURS) + [
        v for v in extra if not parse_method(v).is_baseline]


def build_blocknet(setting: BenchSetting) -> BlockNet:
    """The model as a BlockNet (raises UserError for an unknown model or option)."""
    return _build_blocknet(setting.network, setting.spec)


def build_net(setting: BenchSetting, method: str) -> ModularNet:
    """The network for ``method``: one module for the baselines, K modules (the plan's) for ours."""
    spec = parse_method(method)
    base = spec.base
    if base in BASELINES:
        net = build_network(setting.network, setting.spec, num_modules=1)
    else:  # the objective's heads: a decoder, a projection... count in the peak
        net = build_network(setting.network, setting.spec, boundaries=setting.boundaries, method=spec.objective)
    if base == "checkpoint":
        net.stages[0] = checkpointed(net.stages[0])
    return net


def resolve_boundaries(setting: BenchSetting) -> BenchSetting:
    """Check the model and K, and fix the module boundaries for ``setting.split``.

    Returns:
        A copy of ``setting`` with ``boundaries`` set (``None`` for an equal-depth split).

    Raises:
        UserError: unknown model, or K above the number of blocks.
    """
    blocknet = build_blocknet(setting)
    split_blocks(len(blocknet.blocks), setting.modules)  # raises for K > blocks
    boundaries = None
    if setting.split == "balanced":
        boundaries = balanced_boundaries(lambda: build_blocknet(setting), setting.modules, setting.batch_shape,
                                         setting.num_classes, transport=True)
    return dataclasses.replace(setting, boundaries=boundaries)


class CheckpointedBlock(nn.Module):
    """A block whose forward is recomputed in backward (``torch.utils.checkpoint``), saving its activations.

    It reports no residues, so the step's loss has no transport term (as e2e) and no extra
    ``out - x`` temporary is made for it.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward_residues(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        from torch.utils.checkpoint import checkpoint

        return checkpoint(self.block, x, use_reentrant=False), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_residues(x)[0]


def checkpointed(stage: Stage) -> Stage:
    """The same stage with every block wrapped in :class:`CheckpointedBlock` (the stem is not)."""
    return Stage([CheckpointedBlock(b) for b in stage.blocks], stem=stage.stem)


def versions(device: str) -> dict[str, Any]:
    """Software and machine this benchmark ran on."""
    info: dict[str, Any] = {
        "torch": torch.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "cpu": _cpu_name(), "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
