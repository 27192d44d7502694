"""Typed run configuration: defaults, validation that names the field, sizes, and TOML loading.

Units are converted here, once: ``--budget 2GB`` becomes bytes and stays bytes everywhere else.
"GB" and "MB" are decimal (10^9, 10^6) as on a spec sheet; "GiB" and "MiB" are binary (2^30, 2^20).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetrgl.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

REGIMES = ("e2e", "parallel", "sequential", "multilap", "pipeline")
PIPELINE_SPLITS = ("memory", "equal")
METHODS = ("trgl", "vangl")
CACHE_MODES = ("auto", "host", "disk", "none")
CACHE_DTYPES = ("fp32", "fp16", "bf16")
OFFLOAD_MODES = ("host", "disk")
TAU_SCHEDULES = ("constant", "double", "multiplier")
DEVICES = ("auto", "cpu", "cuda")

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int | float) -> int:
    """Parse a human memory size into bytes.

    Args:
        text: ``"2GB"`` (2*10^9), ``"1.5GiB"`` (1.5*2^30), ``"512MB"``, ``"800MiB"``, or a number of bytes.

    Returns:
        The size in bytes, a positive integer.

    Raises:
        UserError: for malformed, unknown-unit, zero or negative sizes.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        match = _SIZE_RE.match(str(text))
        if match is None:
            raise UserError(f"malformed size {text!r}: use a number and a unit, e.g. 2GB, 1.5GiB, 512MB, 800MiB")
        value, unit = float(match.group(1)), match.group(2).lower()
        if unit not in _UNITS:
            raise UserError(f"unknown size unit {match.group(2)!r} in {text!r}: use B, KB, MB, GB, KiB, MiB or GiB")
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise UserError(f"size {text!r} must be greater than zero")
    return size


def format_bytes(n: int | float | None, binary: bool = True) -> str:
    """Format bytes as MiB/GiB (binary) or MB/GB (decimal); the unit is always printed."""
    if n is None:
        return "n/a"
    base, units = (1024.0, ("B", "KiB", "MiB", "GiB", "TiB")) if binary else (1000.0, ("B", "KB", "MB", "GB", "TB"))
    value, unit = float(n), units[0]
    for unit in units:
        if abs(value) < base or unit == units[-1]:
            break
        value /= base
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


@dataclass
class TrainConfig:
    """Everything a training run needs. Field names match the CLI flags (``--batch-size`` -> batch_size)."""

    model: str = "resnet20"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    train_fraction: float = 1.0
    augment: bool = True
    modules: int | str = 4  # K, or "auto": the fewest modules that fit --budget
    split: str = "equal"  # equal depth, or "balanced" by estimated memory
    micro_batch: int | None = None  # gradient accumulation over micro-batches (the planner may set it)
    boundaries: list[int] | None = None  # explicit first-block index of modules 2..K
    regime: str = "sequential"
    method: str = "trgl"
    tau: float = 10.0  # benchmarks/accuracy: tau 1 loses up to 8 points with many modules and little data
    tau_schedule: str = "double"
    multiplier_step: float = 1.0  # h: lambda grows by h * CE ...
    multiplier_every: int = 50  # ... every s iterations
    epochs: int = 2  # epochs per module (sequential), per lap (multilap), or in total (e2e, parallel)
    epochs_step: int = 0  # sequential: module k trains epochs + k * epochs_step
    laps: int = 2  # multilap only
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    init: str = "default"  # or "orthogonal"
    init_gain: float = 0.1
    head: str = "auto"
    budget: int | None = None  # bytes
    cache: str = "auto"  # where finished modules' outputs go (sequential, multilap)
    cache_dtype: str = "fp32"
    cache_views: int = 1  # augmented views cached per training sample
    cache_dir: str | None = None  # default: <out>/cache
    keep_cache: bool = False
    offload: str = "host"  # where frozen modules go
    device: str = "auto"
    seed: int = 0
    out: str = "runs/latest"
    data_parallel: bool = False  # torchrun: every rank trains every module on its shard (edgetrgl.distributed)
    sync_bn: bool = False  # data parallel on GPUs: BatchNorm statistics over the global batch
    dist_timeout: float = 60.0  # seconds to wait for the other ranks (rendezvous, collectives)
    pipeline_split: str = "memory"  # pipeline: modules per rank balanced by estimated memory, or equal counts
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field; raise UserError naming the first bad one."""
        _choice("regime", self.regime, REGIMES)
        _choice("method", self.method, METHODS)
        _choice("tau_schedule", self.tau_schedule, TAU_SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("init", self.init, ("default", "orthogonal"))
        _choice("cache", self.cache, CACHE_MODES)
        _choice("cache_dtype", self.cache_dtype, CACHE_DTYPES)
        _choice("offload", self.offload, OFFLOAD_MODES)
        _choice("head", self.head, ("auto", "linear"))
        _choice("split", self.split, ("equal", "balanced"))
        _choice("pipeline_split", self.pipeline_split, PIPELINE_SPLITS)
        if self.data_parallel and self.regime == "pipeline":
            raise UserError("--data-parallel is for the e2e, parallel, sequential and multilap regimes, not pipeline")
        if self.sync_bn and not self.data_parallel:
            raise UserError("--sync-bn needs --data-parallel")
        if not self.dist_timeout > 0:
            raise UserError(f"--dist-timeout must be greater than zero, got {self.dist_timeout!r}")
        if self.modules != "auto" and (not isinstance(self.modules, int) or isinstance(self.modules, bool) or self.modules < 1):
            raise UserError(f"--modules must be a positive integer or 'auto', got {self.modules!r}")
        if self.micro_batch is not None and (not isinstance(self.micro_batch, int) or self.micro_batch < 1):
            raise UserError(f"--micro-batch must be a positive integer, got {self.micro_batch!r}")
        for name in ("batch_size", "laps", "multiplier_every", "cache_views"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserError(f"{_flag(name)} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("epochs", "epochs_step"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise UserError(f"{_flag(name)} must be a non-negative integer, got {getattr(self, name)!r}")
        for name in ("tau", "lr"):
            if not getattr(self, name) > 0:
                raise UserError(f"{_flag(name)} must be greater than zero, got {getattr(self, name)!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise UserError(f"--train-fraction must be in (0, 1], got {self.train_fraction!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.budget is not None and not isinstance(self.budget, int):
            self.budget = parse_size(self.budget)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (TOML file, saved run), rejecting unknown keys with their name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown config key(s): {', '.join(unknown)}")
        values = dict(values)
        if isinstance(values.get("budget"), str):
            values["budget"] = parse_size(values["budget"])
        try:
            return cls(**values)
        except TypeError as exc:  # wrong type for a field that validation compares
            raise UserError(f"bad config value: {exc}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict; keys may use dashes or underscores.

    Raises:
        UserError: if the file is missing, unreadable or not valid TOML.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"malformed TOML in {path}: {exc}") from None
    return {key.replace("-", "_"): value for key, value in data.items()}


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{_flag(name)} must be one of {', '.join(choices)}; got {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
