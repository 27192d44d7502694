"""Multi-lap sequential training: ``--laps`` passes of sequential training over all modules."""

from __future__ import annotations

from edgetrgl.training.context import Regime, RegimeContext, RegimeTraits
from edgetrgl.training.regimes.sequential import train_laps


def run(ctx: RegimeContext) -> None:
    train_laps(ctx, ctx.cfg.laps)


REGIME = Regime("multilap", run, RegimeTraits(modular=True, needs_cache=True, plans_budget=True),
                "--laps passes of sequential training over the modules", epochs_help="per lap")
