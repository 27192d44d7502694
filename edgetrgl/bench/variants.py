"""Method names with step options: ``sequential-trgl+ckpt``, ``sequential-trgl+bf16``, ``e2e+bf16``.

A method is a base (a baseline or one of ours) plus the options of :func:`edgetrgl.step.local_step`
it trains with, written as ``+name`` suffixes. The name is parsed once, here, into a
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
EXAMPLE = "sequential-trgl+ckpt+bf16"


@dataclass(frozen=True)
class Method:
    """One compared method: its base name and the step options it trains with."""

    base: str
    checkpoint_blocks: bool = False
    precision: str = "fp32"

    @property
    def name(self) -> str:
        """Canonical name: the base, then ``+ckpt``, then the precision when not fp32."""
        return self.base + ("+ckpt" if self.checkpoint_blocks else "") + ("" if self.precision == "fp32" else f"+{self.precision}")

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
        """The keywords ``local_step`` takes for this method."""
        return {"checkpoint_blocks": self.checkpoint_blocks, "precision": self.precision}


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
                        f"(e.g. sequential-infopro), optionally with +{', +'.join(STEP_OPTIONS)} (e.g. {EXAMPLE})")
    fields: dict[str, Any] = {}
    for option in options:
        if option not in STEP_OPTIONS:
            raise UserError(f"unknown step option {option!r} in {name!r}: options are +{', +'.join(STEP_OPTIONS)}")
        key, value = STEP_OPTIONS[option]
        if key in fields:
            raise UserError(f"method {name!r} sets {key} twice")
        fields[key] = value
    if fields.get("checkpoint_blocks") and base in BASELINES:
        raise UserError(f"method {name!r}: +ckpt is for edgetrgl's methods ({', '.join(OURS)}); "
                        "torch's per-block checkpointing is the `checkpoint` baseline")
    return Method(base, **fields)
