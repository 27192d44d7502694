"""Typed run configuration in sections, validated where it is built; sizes; TOML loading.

A :class:`TrainConfig` is seven small sections, each a dataclass whose fields are documented (one
line each, :func:`setting`: the CLI's flags and ``--set`` come from them) and validated with errors
that name the flag:

    network   the model and its split into modules      data      the dataset and augmentation
    training  regime, method, tau schedule, epochs       optim     SGD and the learning-rate schedule
    memory    budget, cache, offload, micro-batch        run       device, seed, run folder
    distributed  torchrun: data parallel, SyncBatchNorm, the pipeline's split, the ranks' timeout

Every field name is unique across sections, so the flat spelling still works everywhere:
``TrainConfig(modules=3, out="runs/x")``, ``cfg.modules``, ``--modules 3`` and a flat TOML file;
a TOML file may also use ``[network]``-style tables.

Units are converted here, once: ``--budget 2GB`` becomes bytes in :class:`MemoryConfig` and stays
bytes everywhere else. "GB" and "MB" are decimal (10^9, 10^6) as on a spec sheet; "GiB" and "MiB"
are binary (2^30, 2^20).
"""

from __future__ import annotations

import copy
import dataclasses
import math
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

METHODS = ("trgl", "vangl")  # the built-in two of old; the registry (edgetrgl.objectives) has them all
TRANSPORTS = ("auto", "on", "off")
CACHE_MODES = ("auto", "host", "disk", "none")
CACHE_DTYPES = ("fp32", "fp16", "bf16", "auto")  # auto: fp32 if it stays in host memory, else fp16
OFFLOAD_MODES = ("host", "disk")
TAU_SCHEDULES = ("constant", "double", "multiplier")
LR_SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("sgd", "adam")  # edgetrgl.step.make_optimizer builds them
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = (*PRECISIONS, "auto")  # auto: the planner weighs fp32 and bf16
PIPELINE_SPLITS = ("memory", "equal")
SPLITS = ("equal", "balanced")
HEADS = ("auto", "linear", "trgl")
INITS = ("default", "orthogonal")

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
        if not math.isfinite(text):  # TOML has inf and nan
            raise UserError(f"size {text!r} must be a finite number of bytes")
        value, unit = float(text), ""
    else:
        match = _SIZE_RE.match(str(text))
        if match is None:
            raise UserError(f"malformed size {text!r}: use a number and a unit, e.g. 2GB, 1.5GiB, 512MB, 800MiB")
        value, unit = float(match.group(1)), match.group(2).lower()
        if unit not in _UNITS:
            raise UserError(f"unknown size unit {match.group(2)!r} in {text!r}: use B, KB, MB, GB, KiB, MiB or GiB")
    scaled = value * _UNITS[unit]
    if not math.isfinite(scaled):  # "1e999GB", or 400 digits: beyond any float
        raise UserError(f"size {text!r} is too large")
    size = int(scaled)
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


# ---- the sections -------------------------------------------------------------------------------
# A field is one line: ``name: type = setting(default, "help", **how_the_cli_spells_it)``. Its help is
# its `edgetrgl train --help` text; the CLI (edgetrgl/cli/config_flags.py) derives the flag and the
# parsing of `--set name=value` from the type, so a new field needs nothing else. A help names what a
# registry holds by quoting it, never by hand: `{regimes.needs_cache}` prints the regimes whose trait
# is set, `{objectives.options}` each objective's options (the CLI fills them in when it prints).
def setting(default: Any, help: str, **cli: Any) -> Any:
    """A documented config field.

    Args:
        default: the value (a list or dict default is copied for every config).
        help: one line: what the field does (the CLI's help text).
        cli: how the command line spells it where the type does not say: ``flag`` (another
            spelling than ``--field-name``), ``choices`` (a tuple, or the name of a registry the CLI
            reads when it parses: ``regimes``, ``objectives``, ``sinks``), ``metavar``, ``parse="size"``
            ("2GB" to bytes), ``extend=True`` (a list flag adds to the list instead of replacing it).

    Returns:
        A :func:`dataclasses.field`.
    """
    metadata = {"help": help, **cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class NetworkConfig:
    """The model and how it is split into modules."""

    model: str = setting("resnet20", "registry name (`edgetrgl models`); a model you pass in is named by its class")
    model_options: dict[str, Any] = setting({}, "keyword options of the model builder, e.g. '{width = 4}'")
    modules: int | str = setting(4, "K, the number of modules, or auto: the fewest that fit --budget", metavar="K|auto")
    split: str = setting("equal", "equal depth, or balanced by estimated memory", choices=SPLITS)
    boundaries: list[int] | None = setting(None, "explicit first block of modules 2..K, e.g. 3,6 (overrides --modules)", metavar="B2,B3,...")
    head: str = setting("auto", "auxiliary classifiers: auto (1CNN / token head), linear, or trgl (the "
                                     "TRGL authors' 1CNN: a fixed AvgPool2d, 6x6 or 3x3 maps on STL-10)", choices=HEADS)
    init: str = setting("default", "weight init: default, or orthogonal (the paper's, gain --init-gain)", choices=INITS)
    init_gain: float = setting(0.1, "gain of the orthogonal init")
    init_from: str | None = setting(None, "fine-tune: start from a run folder, its model.pt, or a torchvision ResNet state dict", metavar="FILE|RUN_DIR")
    freeze_modules: int = setting(0, "fine-tune: the first N modules keep their weights, the rest train", metavar="N")

    def validate(self) -> None:
        _choice("split", self.split, SPLITS)
        if not isinstance(self.freeze_modules, int) or isinstance(self.freeze_modules, bool) or self.freeze_modules < 0:
            raise UserError(f"--freeze-modules must be a non-negative integer, got {self.freeze_modules!r}")
        _choice("head", self.head, HEADS)
        _choice("init", self.init, INITS)
        _finite_number(self, "init_gain", above=0.0)
        if self.modules != "auto" and (not isinstance(self.modules, int) or isinstance(self.modules, bool) or self.modules < 1):
            raise UserError(f"--modules must be a positive integer or 'auto', got {self.modules!r}")
        if self.boundaries is not None and not all(isinstance(b, int) for b in self.boundaries):
            raise UserError(f"--boundaries must be block indices, got {self.boundaries!r}")


@dataclass
class DataConfig:
    """Which data, how much of it, and its augmentation."""

    dataset: str = setting("mnist5k", "registry name (`edgetrgl datasets`); mnist5k is bundled (offline)")
    data_dir: str | None = setting(None, "dataset root (torchvision sets) or ImageFolder root")
    download: bool = setting(False, "let torchvision download the dataset")
    train_fraction: float = setting(1.0, "train on this stratified fraction of the training split")
    augment: bool = setting(True, "random crop (and flip where valid); --no-augment: none")
    val_fraction: float | str = setting("auto", "hold out this stratified, seeded fraction of the training split to "
                                                "choose the best module by; auto: 0.1 where every class keeps 10 "
                                                "validation samples, else 0; 0: none (best chosen on the test set)",
                                        metavar="F|auto")
    dataset_options: dict[str, Any] = setting({}, "keyword options of the dataset loader, e.g. '{num_train = 256}'")
    skip_bad_images: bool = setting(False, "imagefolder: leave out the images that cannot be decoded (each is "
                                           "decoded once, before training), with a warning, instead of stopping")

    def validate(self) -> None:
        if not 0.0 < self.train_fraction <= 1.0:
            raise UserError(f"--train-fraction must be in (0, 1], got {self.train_fraction!r}")
        if not isinstance(self.skip_bad_images, bool):
            raise UserError(f"--skip-bad-images must be true or false, got {self.skip_bad_images!r}")
        if self.val_fraction != "auto" and (isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float))
                                            or not 0.0 <= self.val_fraction < 1.0):
            raise UserError(f"--val-fraction must be auto or a number in [0, 1), got {self.val_fraction!r}")


@dataclass
class TrainingConfig:
    """The regime, the method and its tau schedule, and how long to train."""

    regime: str = setting("sequential", "how the modules train", choices="regimes")
    method: str = setting("trgl", "the local objective (edgetrgl/objectives/)", choices="objectives")
    objective_options: dict[str, Any] = setting({}, "options of the local objective, e.g. '{ixx_1 = 5, ixy_2 = 1}' "
                                                    "for infopro; each objective's: {objectives.options}")
    transport: str = setting("auto", "the transport term on any objective: on, off, or auto (the objective's "
                                     "default: on for {objectives.transport})", choices=TRANSPORTS)
    tau: float = setting(10.0, "transport step size (the paper: 1; benchmarks/accuracy: 1 loses up to 8 points with many modules and little data)")
    tau_schedule: str = setting("double", "constant; double: tau/2 for the first half of the modules; multiplier", choices=TAU_SCHEDULES)
    multiplier_step: float = setting(1.0, "multiplier schedule: lambda grows by h * CE ...")
    multiplier_every: int = setting(50, "... every s steps")
    epochs: int = setting(2, "training epochs: {regimes.epochs_help}")
    epochs_step: int = setting(0, "{regimes.epochs_for}: module k trains epochs + k * epochs_step")
    laps: int = setting(2, "multilap: passes over the modules")
    recalibrate_bn: bool = setting(False, "after each module trains, recompute its BatchNorm statistics over one "
                                          "pass of its training inputs: for few steps, where the running averages "
                                          "are stale (the paper's recipe on small data scores chance without it)")

    def validate(self) -> None:
        # the regime's name is checked against the registry when the run is planned: the registry
        # sits above this layer (it imports the loops)
        if not isinstance(self.regime, str) or not self.regime:
            raise UserError(f"--regime must be a regime's name, got {self.regime!r}")
        # the method's name is checked against the objective registry when the run is planned: the
        # registry sits above this layer (it builds modules)
        if not isinstance(self.method, str) or not self.method:
            raise UserError(f"--method must be a local objective's name, got {self.method!r}")
        if not isinstance(self.objective_options, dict):
            raise UserError(f"--objective-options must be a table of options, got {self.objective_options!r}")
        _choice("transport", self.transport, TRANSPORTS)
        _choice("tau_schedule", self.tau_schedule, TAU_SCHEDULES)
        _positive_ints(self, "laps", "multiplier_every")
        for name in ("epochs", "epochs_step"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise UserError(f"{_flag(name)} must be a non-negative integer, got {getattr(self, name)!r}")
        _finite_number(self, "tau", above=0.0)
        _finite_number(self, "multiplier_step", at_least=0.0)
        if not isinstance(self.recalibrate_bn, bool):
            raise UserError(f"--recalibrate-bn must be true or false, got {self.recalibrate_bn!r}")


@dataclass
class OptimConfig:
    """The optimizer (SGD with momentum: the paper's; Adam: PredSim's) and the batch."""

    optimizer: str = setting("sgd", "sgd (with --momentum: the paper's) or adam (PredSim's: configs/predsim.toml)", choices=OPTIMIZERS)
    batch_size: int = setting(128, "training batch size")
    lr: float = setting(0.05, "SGD learning rate (peak of the schedule)")
    lr_schedule: str = setting("cosine", "cosine to 0 over each module's steps, or constant (the paper's)", choices=LR_SCHEDULES)
    momentum: float = setting(0.9, "SGD momentum")
    weight_decay: float = setting(1e-4, "SGD weight decay")
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy, in [0, 1)")

    def validate(self) -> None:
        _positive_ints(self, "batch_size")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _finite_number(self, "lr", above=0.0)
        _finite_number(self, "momentum", at_least=0.0)  # torch's SGD refuses negative ones, with a traceback
        _finite_number(self, "weight_decay", at_least=0.0)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing!r}")


@dataclass
class MemoryConfig:
    """How much memory the run may use, and where the cache and the frozen modules go.

    ``budget`` has one meaning (see :mod:`edgetrgl.planning.budget`): the bytes of the compute
    device's memory the run may fill. Parsed here, from "2GB" or "800MiB", and nowhere else.
    """

    budget: int | None = setting(None, "memory budget, e.g. 2GB (10^9 bytes), 1.5GiB (2^30), 512MB, 800MiB", parse="size")
    micro_batch: int | None = setting(None, "accumulate gradients over micro-batches of this size (the planner may set it)")
    cache: str = setting("auto", "where finished modules' outputs go ({regimes.needs_cache})", choices=CACHE_MODES)
    cache_dtype: str = setting("fp32", "storage dtype of the cache; auto: fp16 when fp32 would not stay in host memory", choices=CACHE_DTYPES)
    cache_views: int = setting(1, "augmented views cached per training sample")
    cache_dir: str | None = setting(None, "folder of the disk cache (default: OUT/cache)", metavar="DIR")
    keep_cache: bool = setting(False, "leave the disk cache on disk after the run")
    offload: str = setting("host", "where frozen modules go: host memory or disk", choices=OFFLOAD_MODES)
    checkpoint_blocks: bool | str = setting("auto", "recompute each block's activations in the module's backward: less memory, more time; auto: the planner uses it under a budget when that is the fastest plan that fits", metavar="on|off|auto")
    precision: str = setting("fp32", "autocast of the module step (fp16 adds a gradient scaler; auto: the planner weighs fp32 and bf16)", choices=PRECISION_CHOICES)
    device_profile: str | None = setting(None, "plan for a board (`edgetrgl devices`), or auto: on shared memory the budget is the whole process; without --budget, the board's memory less its OS reserve", metavar="NAME|auto")

    def validate(self) -> None:
        _choice("cache", self.cache, CACHE_MODES)
        if self.device_profile is not None and (not isinstance(self.device_profile, str) or not self.device_profile):
            raise UserError(f"--device-profile must be a profile's name or 'auto', got {self.device_profile!r}")
        _choice("cache_dtype", self.cache_dtype, CACHE_DTYPES)
        _choice("offload", self.offload, OFFLOAD_MODES)
        _choice("precision", self.precision, PRECISION_CHOICES)
        if not isinstance(self.checkpoint_blocks, bool) and self.checkpoint_blocks != "auto":
            raise UserError(f"--checkpoint-blocks must be true, false or auto, got {self.checkpoint_blocks!r}")
        _positive_ints(self, "cache_views")
        if self.micro_batch is not None and (not isinstance(self.micro_batch, int) or self.micro_batch < 1):
            raise UserError(f"--micro-batch must be a positive integer, got {self.micro_batch!r}")
        if self.budget is not None and (not isinstance(self.budget, int) or isinstance(self.budget, bool)):
            self.budget = parse_size(self.budget)  # the one place a budget is parsed
        elif self.budget is not None and self.budget <= 0:
            raise UserError(f"--budget must be greater than zero, got {self.budget!r}")


@dataclass
class RunConfig:
    """Where the run computes and writes, its seed, and where its metrics go."""

    device: str = setting("auto", "auto: cuda if available", choices=DEVICES)
    seed: int = setting(0, "seed of the weights, the data order and the augmentation")
    out: str = setting("runs/latest", "run folder; \"\" writes nothing", metavar="DIR")
    loggers: list[str] = setting(["jsonl", "console"], "metric sinks; the flag adds one, --set loggers=[...] replaces them", flag="--log", extend=True, choices="sinks", metavar="NAME")

    def validate(self) -> None:
        _choice("device", self.device, DEVICES)
        if not isinstance(self.loggers, list) or not all(isinstance(name, str) for name in self.loggers):
            raise UserError(f"--log/loggers must be a list of sink names, got {self.loggers!r}")
        # the names are checked against the sink registry when the run starts: it sits above this layer
        if "jsonl" not in self.loggers:  # metrics.jsonl is the run's record: a resume cuts it back to its checkpoint
            raise UserError(f"loggers must keep jsonl (metrics.jsonl is the run's record), got {self.loggers!r}")


@dataclass
class DistributedConfig:
    """Runs under torchrun (see :mod:`edgetrgl.distributed`); ignored by a single process."""

    data_parallel: bool = setting(False, "every rank trains every module on its shard of each batch (gradients averaged)")
    sync_bn: bool = setting(False, "with --data-parallel on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)")
    dist_timeout: float = setting(60.0, "seconds to wait for the other ranks (rendezvous, collectives)", metavar="SECONDS")
    pipeline_split: str = setting("memory", "{regimes.multi_process} regime: modules per rank balanced by estimated memory, or equal counts", choices=PIPELINE_SPLITS)

    def validate(self) -> None:
        # data_parallel with a multi-process regime (pipeline) is refused where the regime is looked
        # up (edgetrgl.training.run.runs_on_ranks): the registry sits above this layer
        _choice("pipeline_split", self.pipeline_split, PIPELINE_SPLITS)
        for name in ("data_parallel", "sync_bn"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"{_flag(name)} must be true or false, got {getattr(self, name)!r}")
        if self.sync_bn and not self.data_parallel:
            raise UserError("--sync-bn needs --data-parallel")
        _finite_number(self, "dist_timeout", above=0.0)


SECTIONS: dict[str, type] = {"network": NetworkConfig, "data": DataConfig, "training": TrainingConfig,
                             "optim": OptimConfig, "memory": MemoryConfig, "run": RunConfig,
                             "distributed": DistributedConfig}
_OWNER = {f.name: section for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


def section_of(name: str) -> str | None:
    """The section that holds field ``name`` (``"lr"`` -> ``"optim"``), or None for no such field."""
    return _OWNER.get(name)


class TrainConfig:
    """Everything a training run needs, in seven sections (see the module docstring).

    Build it flat (``TrainConfig(modules=3, lr=0.1)``), by section
    (``TrainConfig(network=NetworkConfig(modules=3))``) or both; read it flat (``cfg.modules``) or
    by section (``cfg.network.modules``). Construction validates every field and raises a
    :class:`UserError` naming the first bad one.
    """

    def __init__(self, network: NetworkConfig | None = None, data: DataConfig | None = None,
                 training: TrainingConfig | None = None, optim: OptimConfig | None = None,
                 memory: MemoryConfig | None = None, run: RunConfig | None = None,
                 distributed: DistributedConfig | None = None, **flat: Any) -> None:
        given = {"network": network, "data": data, "training": training, "optim": optim, "memory": memory, "run": run,
                 "distributed": distributed}
        for name, cls in SECTIONS.items():
            section = given[name]
            object.__setattr__(self, name, copy.deepcopy(section) if section is not None else cls())
        unknown = sorted(set(flat) - set(_OWNER))
        if unknown:
            raise UserError(f"unknown config key(s): {', '.join(unknown)}")
        for key, value in flat.items():
            setattr(getattr(self, _OWNER[key]), key, value)
        self.validate()

    def __getattr__(self, name: str) -> Any:  # only for names that are not sections: the flat spelling
        owner = _OWNER.get(name)
        if owner is None:
            raise AttributeError(f"TrainConfig has no field {name!r}")
        return getattr(object.__getattribute__(self, owner), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SECTIONS:
            object.__setattr__(self, name, value)
        elif name in _OWNER:
            setattr(getattr(self, _OWNER[name]), name, value)
        else:
            raise AttributeError(f"TrainConfig has no field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TrainConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "TrainConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    def validate(self) -> None:
        """Check every section; raise UserError naming the first bad field."""
        for name in SECTIONS:
            getattr(self, name).validate()

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some flat fields changed."""
        return TrainConfig(**{**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{field: value}`` (what config.json and summary.json record)."""
        return {k: v for name in SECTIONS for k, v in dataclasses.asdict(getattr(self, name)).items()}

    def to_sections(self) -> dict[str, dict[str, Any]]:
        """``{section: {field: value}}``, the shape of a sectioned TOML file."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (TOML file, saved run), flat or with section tables, rejecting unknown
        keys with their name."""
        flat = flatten_sections(values)
        try:
            return cls(**flat)
        except TypeError as exc:  # wrong type for a field that validation compares
            raise UserError(f"bad config value: {exc}") from None


def flatten_sections(values: dict[str, Any]) -> dict[str, Any]:
    """``{"network": {"modules": 3}, "lr": 0.1}`` -> ``{"modules": 3, "lr": 0.1}``.

    Raises:
        UserError: a key in the wrong section, or one given twice.
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for inner, item in value.items():
                inner = inner.replace("-", "_")
                if inner in _OWNER and _OWNER[inner] != key:
                    raise UserError(f"config key {inner!r} belongs in [{_OWNER[inner]}], not [{key}]")
                if inner not in _OWNER:
                    raise UserError(f"unknown config key {inner!r} in [{key}]")
                if inner in flat:
                    raise UserError(f"config key {inner!r} is given twice")
                flat[inner] = item
        else:
            if key in flat:
                raise UserError(f"config key {key!r} is given twice")
            flat[key] = value
    return flat


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a flat dict; keys may use dashes or underscores, and may sit
    in section tables (``[network]``, ``[memory]``, ...).

    Raises:
        UserError: if the file is missing, unreadable, not valid TOML, or has a misplaced key.
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
    except UnicodeDecodeError as exc:  # TOML is UTF-8: a binary or Latin-1 file
        raise UserError(f"{path} is not a TOML file: not UTF-8 text (byte {exc.start})") from None
    return flatten_sections({key.replace("-", "_"): value for key, value in data.items()})


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{_flag(name)} must be one of {', '.join(choices)}; got {value!r}")


def _finite_number(section: Any, name: str, above: float | None = None, at_least: float | None = None) -> None:
    """A real, finite number (TOML has inf and nan), above or at least a bound."""
    value = getattr(section, name)
    bound = f" greater than {above:g}" if above is not None else f" at least {at_least:g}" if at_least is not None else ""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (above is not None and not value > above) or (at_least is not None and not value >= at_least)):
        raise UserError(f"{_flag(name)} must be a finite number{bound}, got {value!r}")


def _positive_ints(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{_flag(name)} must be a positive integer, got {value!r}")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
