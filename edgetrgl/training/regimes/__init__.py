"""The regime registry: each regime is one file here with one entry point, ``run(trainer)``, and
declares its traits; adding one is that file plus its name in ``BUILTIN``.

    from edgetrgl.training.regimes import Regime, RegimeTraits, register
    register(Regime("mine", run=my_loop, traits=RegimeTraits(modular=True, needs_cache=False,
                                                           plans_budget=False), help="..."))

Everything that depends on the regime (how many modules, whether a cache and a planner are
needed, how many epochs module k trains) asks the registry, never compares names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from edgetrgl.planning.traits import RegimeTraits  # plain data, below the planner
from edgetrgl.registry import Registry

if TYPE_CHECKING:
    from edgetrgl.training.trainer import Trainer

__all__ = ["BUILTIN", "Regime", "RegimeTraits", "get_regime", "regime_names", "regimes", "register", "unregister"]

BUILTIN = ("e2e", "parallel", "sequential", "multilap", "pipeline")  # one line per regime file in this folder


@dataclass(frozen=True)
class Regime:
    """A training regime: its name, its loop, its traits and a one-line help."""

    name: str
    run: Callable[["Trainer"], None]
    traits: RegimeTraits
    help: str
    epochs_for: Callable[[Any, int], int] | None = None  # (cfg, k) -> epochs of module k; default cfg.epochs

    def module_epochs(self, cfg, k: int) -> int:
        return self.epochs_for(cfg, k) if self.epochs_for is not None else cfg.epochs


# each regime file's REGIME, collected when a regime is first looked up
_REGISTRY: Registry[Regime] = Registry("--regime", __name__, BUILTIN, lambda module: [module.REGIME])

# the registry's own methods are the public API: register(regime) (returns it, so a regime file can
# write ``REGIME = register(...)``), unregister(name), get_regime(name) (an unknown name: a
# UserError listing the known ones), the names and the regimes
register = _REGISTRY.register
unregister = _REGISTRY.remove
get_regime = _REGISTRY.get
regime_names = _REGISTRY.names
regimes = _REGISTRY.values
