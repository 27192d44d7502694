"""Multi-lap sequential training: ``--laps`` passes of sequential training over all modules."""

from __future__ import annotations

from edgetrgl.training.regimes import Regime, RegimeTraits
from edgetrgl.training.regimes.sequential import train_laps


def run(trainer) -> None:
    train_laps(trainer, trainer.cfg.laps)


REGIME = Regime("multilap", run, RegimeTraits(modular=True, needs_cache=True, plans_budget=True),
                "--laps passes of sequential training over the modules")
