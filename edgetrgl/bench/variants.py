"""Method names with step options: ``sequential-trgl+ckpt``, ``sequential-trgl+bf16``, ``e2e+mb8``.

A method is a base (a baseline or one of ours) plus the options of :func:`edgetrgl.step.local_step`
it trains with, written as ``+name`` suffixes. ``+mbN`` is gradient accumulation: the batch runs as
micro-batches of N samples whose gradients add up to the full batch's before the one optimizer step
(exact but for BatchNorm, which then normalises each micro-batch); every method, baselines
included, takes it. The name is parsed once, here, into a
:class:`Method`; the measuring worker and the estimator read its fields, never the string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgetrgl.errors import UserError

BASELINES = ("e2e", "checkpoint", "offload")
OURS = ("parallel-vangl", "parallel-trgl", "sequential-vangl", "sequential-trgl")  # compared by default
MODULE_WISE = ("parallel", "sequential")  # "<regime>-<objective>" names any registered objective: sequential-infopro
# suffix -> local_step keyword and value; ckpt is for ours only (a baseline with it is `checkpoint`)
STEP_OPTIONS: dict[str, tuple[str, Any]] = {
    "ckpt": ("checkpoint_blocks", True),
    "bf16": ("precision", "bf16"),
    "fp16": ("precision", "fp16"),
}
MICRO_BATCH = "mb"  # +mbN: micro-batches of N samples, gradients accumulated to the full batch
OPTION_NAMES = (*STEP_OPTIONS, f"{MICRO_BATCH}N")
EXAMPLE = "sequential-trgl+ckpt+bf16+mb8"


@dataclass(frozen=True)
class Method:
    """One compared method: its base name and the step options it trains with."""

    base: str
    checkpoint_blocks: bool = False
    precision: str = "fp32"
    micro_batch: int | None = None  # None: the whole batch at once

    @property
    def name(self) -> str:
        """Canonical name: the base, then ``+ckpt``, the precision when not fp32, then ``+mbN``."""
        return (self.base + ("+ckpt" if self.checkpoint_blocks else "") + ("" if self.precision == "fp32" else f"+{self.precision}")
                + ("" if self.micro_batch is None else f"+{MICRO_BATCH}{self.micro_batch}"))

    @property
    def is_baseline(self) -> bool:
        return self.base in BASELINES

    @property
    def sequential(self) -> bool:
        return self.base.startswith("sequential")

    @property
    def objective(self) -> str:
        """The local objective (:mod:`edgetrgl.objectives`); ``vangl`` for the baselines (one module, CE)."""
        return "vangl" if self.is_baseline else self.base.split("-", 1)[1]

    @property
    def transport(self) -> bool:
        """The transport term is on: the objective's default (TRGL only); never for a baseline."""
        from edgetrgl.objectives import uses_transport

        return not self.is_baseline and uses_transport(self.objective)

    def step_options(self) -> dict[str, Any]:
        """The keywords ``local_step`` takes for this method (``micro_batch`` only when it is set)."""
        options: dict[str, Any] = {"checkpoint_blocks": self.checkpoint_blocks, "precision": self.precision}
        if self.micro_batch is not None:
            options["micro_batch"] = self.micro_batch
        return options

    def check_batch(self, batch_size: int) -> None:
        """Raises UserError when ``+mbN`` does not split ``batch_size`` into several micro-batches."""
        if self.micro_batch is not None and self.micro_batch >= batch_size:
            raise UserError(f"method {self.name!r}: micro-batches of {self.micro_batch} must be smaller than "
                            f"--batch-size {batch_size} (gradients are accumulated over several of them)")


def parse_method(name: str) -> Method:
    """``"sequential-trgl+ckpt+bf16"`` -> ``Method("sequential-trgl", True, "bf16")``.

    Raises:
        UserError: unknown base or option, an option given twice, two precisions, ``+ckpt`` on a baseline.
    """
    from edgetrgl.objectives import objective_names

    base, *options = [part.strip() for part in name.strip().split("+")]
    regime, _, objective = base.partition("-")
    if base not in BASELINES and not (regime in MODULE_WISE and objective in objective_names()):
        raise UserError(f"unknown method {name!r}: a method is one of {', '.join(BASELINES)}, or "
                        f"{'/'.join(MODULE_WISE)}-<objective> with an objective in {', '.join(objective_names())} "
                        f"(e.g. sequential-infopro), optionally with +{', +'.join(OPTION_NAMES)} (e.g. {EXAMPLE})")
    fields: dict[str, Any] = {}
    for option in options:
        if option.startswith(MICRO_BATCH) and option not in STEP_OPTIONS:
            key, value = "micro_batch", _micro_batch(option, name)
        elif option in STEP_OPTIONS:
            key, value = STEP_OPTIONS[option]
        else:
            raise UserError(f"unknown step option {option!r} in {name!r}: options are +{', +'.join(OPTION_NAMES)}")
        if key in fields:
            raise UserError(f"method {name!r} sets {key} twice")
        fields[key] = value
    if fields.get("checkpoint_blocks") and base in BASELINES:
        raise UserError(f"method {name!r}: +ckpt is for edgetrgl's methods ({', '.join(OURS)}); "
                        "torch's per-block checkpointing is the `checkpoint` baseline")
    return Method(base, **fields)


def _micro_batch(option: str, name: str) -> int:
    """``"mb8"`` -> 8. Raises UserError for ``mb``, ``mb0``, ``mbx``."""
    digits = option[len(MICRO_BATCH):]
    if not digits.isdigit() or int(digits) < 1:
        raise UserError(f"step option {option!r} in {name!r}: +{MICRO_BATCH}N takes a positive number of samples "
                        f"per micro-batch, e.g. +{MICRO_BATCH}8")
    return int(digits)
