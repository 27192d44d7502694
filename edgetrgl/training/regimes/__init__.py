"""The regime registry: each regime is one file here with one entry point, ``run(ctx)`` (``ctx``
a :class:`~edgetrgl.training.context.RegimeContext`), and declares its traits; adding one is that
file plus its import in ``_load_builtin``.

    from edgetrgl.training.regimes import Regime, RegimeTraits, register
    register(Regime("mine", run=my_loop, traits=RegimeTraits(modular=True, needs_cache=False,
                                                           plans_budget=False), help="..."))

Everything that depends on the regime (how many modules, whether a cache and a planner are
needed, how many epochs module k trains) asks the registry, never compares names.
"""

from __future__ import annotations

from edgetrgl.registry import Registry
from edgetrgl.training.context import Regime, RegimeContext, RegimeTraits

__all__ = ["Regime", "RegimeContext", "RegimeTraits", "get_regime", "regime_names", "regimes", "register",
           "unregister"]


def _load_builtin() -> list[Regime]:
    """The regime files of this folder, one import each, in ``--regime``'s order."""
    from edgetrgl.training.regimes import e2e, parallel, sequential, multilap, pipeline

    return [module.REGIME for module in (e2e, parallel, sequential, multilap, pipeline)]


_REGISTRY: Registry[Regime] = Registry("--regime", _load_builtin)

# the registry's own methods are the public API: register(regime) (returns it, so a regime file can
# write ``REGIME = register(...)``), unregister(name), get_regime(name) (an unknown name: a
# UserError listing the known ones), the names and the regimes
register = _REGISTRY.register
unregister = _REGISTRY.remove
get_regime = _REGISTRY.get
regime_names = _REGISTRY.names
regimes = _REGISTRY.values
