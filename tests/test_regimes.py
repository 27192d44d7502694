"""The regimes (training/regimes/): every one learns well above chance on tiny data and reports
every module truthfully; the registry takes a new regime as one function and one line."""

from __future__ import annotations

import json

import pytest
import torch

import ast
from pathlib import Path

from edgetrgl.api import evaluate, train
from edgetrgl.data import load_dataset
from edgetrgl.errors import UserError
from edgetrgl.training.context import RegimeContext
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.regimes import Regime, RegimeTraits, get_regime, register, regime_names, unregister
from tests.conftest import tiny_config

CHANCE = 0.10


@pytest.mark.parametrize("regime,method", [
    ("e2e", "vangl"), ("parallel", "trgl"), ("parallel", "vangl"),
    ("sequential", "trgl"), ("sequential", "vangl"), ("multilap", "trgl"),
])
def test_regime_learns_above_chance(regime, method, synthetic_data):
    cfg = tiny_config(regime=regime, method=method, epochs=3 if regime != "multilap" else 2, laps=2)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    expected_modules = 1 if regime == "e2e" else 3
    assert len(result.modules) == expected_modules
    accs = [m["test_accuracy"] for m in result.modules]
    assert all(a is not None for a in accs)
    assert result.last_module["test_accuracy"] > 4 * CHANCE, accs
    # the reported accuracies are the trained heads' own: evaluated again from the returned network
    assert evaluate(result.net, synthetic_data[1], cfg.batch_size) == accs
    assert result.summary()["best_module"] == {"module": accs.index(max(accs)) + 1, "test_accuracy": max(accs)}
    assert all(m["peak_bytes"] > 0 for m in result.modules if m["epochs"])


def test_sequential_epochs_grow_with_depth(synthetic_data):
    cfg = tiny_config(regime="sequential", epochs=1, epochs_step=1)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert [m["epochs"] for m in result.modules] == [1, 2, 3]


def test_multiplier_schedule_trains(synthetic_data):
    cfg = tiny_config(regime="parallel", tau_schedule="multiplier", multiplier_every=2, epochs=4)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert result.last_module["test_accuracy"] > 4 * CHANCE


def test_sequential_keeps_finished_modules_off_the_device_and_frozen(synthetic_data, tmp_path, monkeypatch):
    """Once module 1 has finished it is offloaded (here to disk: its tensors leave memory) while
    module 2 trains, and its weights end the run exactly as they were when it finished."""
    from edgetrgl.training.offload import Offloader

    seen = {}
    release = Offloader.release

    def watch(offloader, k):  # module k has finished: it is frozen and released
        release(offloader, k)
        stage = offloader.net.stages[0]
        seen[k] = {"weights": {n: t.clone() for n, t in offloader.stage_state(0).items()},
                   "devices": {p.device.type for p in stage.parameters()},
                   "head": {p.device.type for p in offloader.net.heads[0].parameters()}}

    monkeypatch.setattr(Offloader, "release", watch)
    cfg = tiny_config(regime="sequential", epochs=1, modules=2, offload="disk", cache="host")
    result = train(cfg, data=synthetic_data, out=tmp_path / "run", quiet=True)
    assert seen[0]["devices"] == {"meta"} and seen[1]["devices"] == {"meta"}  # on disk, not in memory
    assert seen[0]["head"] == {"cpu"}
    final = {n: t for n, t in result.net.stages[0].state_dict().items()}
    assert final.keys() == seen[0]["weights"].keys()
    assert all(torch.equal(final[n], seen[0]["weights"][n]) for n in final)  # untouched while module 2 trained
    assert all(torch.equal(seen[1]["weights"][n], seen[0]["weights"][n]) for n in final)
    assert result.modules[0]["cache_bytes"] > 0  # module 1's outputs were cached for module 2
    assert result.modules[1]["cache_bytes"] == 0  # nothing cached after the last module


# ---- the registry and the context ----------------------------------------------------------------
CONTEXT = {name for name in dir(RegimeContext) if not name.startswith("_")} | set(RegimeContext.__annotations__)


class OnlyTheContext:
    """Hands a regime the trainer's RegimeContext members and fails on anything else it touches."""

    def __init__(self, ctx) -> None:
        object.__setattr__(self, "_ctx", ctx)

    def __getattr__(self, name):
        assert name in CONTEXT, f"the regime touched {name!r}, which is not part of RegimeContext"
        return getattr(self._ctx, name)

    def __setattr__(self, name, value) -> None:
        assert name in CONTEXT, f"the regime set {name!r}, which is not part of RegimeContext"
        setattr(self._ctx, name, value)


@pytest.fixture
def toy_regime():
    """A toy regime that trains only the last module, written against the context alone (checked:
    it is handed nothing else); unregistered afterwards, so later tests (and the CLI's choices)
    never see it."""

    def toy(ctx: RegimeContext) -> None:
        net, cfg = ctx.net, ctx.cfg
        net.to(ctx.device)
        last = net.num_modules - 1
        ctx.start_modules()

        def step(x, y, global_step):
            with torch.no_grad():
                for k in range(last):
                    x = net.stages[k](x.to(ctx.device))
            return ctx.train_step([last], x, y, global_step)[1]

        for epoch in range(ctx.position["epoch"], cfg.epochs):
            ctx.run_epoch([last], epoch, ctx.loader(epoch), step, label="toy")
        ctx.finish_modules(list(range(net.num_modules)), lap=0,
                           evaluate=lambda: dict(enumerate(evaluate_heads(net, ctx.test_set, cfg.batch_size, ctx.device))))

    register(Regime("last-only", lambda ctx: toy(OnlyTheContext(ctx)),
                    RegimeTraits(modular=True, needs_cache=False, plans_budget=False), "toy"))
    yield "last-only"
    unregister("last-only")


def test_a_toy_regime_is_one_function_and_one_registry_line(toy_regime, synthetic_data, tmp_path):
    """Every batch trains only the last module (a toy, touching only the context): the context does
    the rest: epoch and module records, the measured step, checkpoints."""
    assert toy_regime in regime_names()
    result = train(tiny_config(regime=toy_regime, epochs=1), data=synthetic_data, out=tmp_path / "run", quiet=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["module"] for r in records if r["event"] == "epoch"] == [3]  # only the last module trained
    assert [r["module"] for r in records if r["event"] == "module"] == [1, 2, 3]
    assert result.modules[2]["peak_bytes"] > 0 and result.modules[0]["peak_bytes"] is None
    assert all(m["test_accuracy"] is not None for m in result.modules)
    assert result.extra["plan"]["regime"] == toy_regime


def test_a_regime_touching_more_than_the_context_is_caught(synthetic_data):
    """The guard above is real: a loop reaching past the context (the trainer's tau schedule) fails."""
    register(Regime("reaches-past", lambda ctx: OnlyTheContext(ctx).tau,
                    RegimeTraits(modular=True, needs_cache=False, plans_budget=False), "toy"))
    try:
        with pytest.raises(AssertionError, match="'tau', which is not part of RegimeContext"):
            train(tiny_config(regime="reaches-past", epochs=1), data=synthetic_data, out=None, quiet=True)
    finally:
        unregister("reaches-past")


def test_the_builtin_regimes_use_only_the_context():
    """Every attribute a built-in loop reads or sets on its ``ctx`` is a RegimeContext member."""
    folder = Path(__file__).resolve().parents[1] / "edgetrgl" / "training" / "regimes"
    used = {}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ctx":
                used.setdefault(node.attr, set()).add(path.name)
    assert used and {"train_step", "run_epoch", "finish_modules"} <= set(used)
    assert {name: files for name, files in used.items() if name not in CONTEXT} == {}


def test_the_toy_regime_is_gone_after_its_test():
    assert "last-only" not in regime_names()
    with pytest.raises(UserError, match="--regime must be one of"):
        get_regime("last-only")


def test_unknown_regime_is_one_line(synthetic_data):
    with pytest.raises(UserError, match="--regime must be one of .*sequential"):
        train(tiny_config(regime="nope"), data=synthetic_data, out=None, quiet=True)


def test_traits_replace_name_comparisons(monkeypatch):
    """Swap the built-in regimes' names (and the objectives'): what a run does follows the entry's
    traits and loop, never its name, and a brand-new name behaves as the traits it declares."""
    from edgetrgl.losses import TauSchedule
    from edgetrgl.objectives import get_objective, objective_names, register as register_objective
    from edgetrgl.objectives import unregister as unregister_objective

    transport_weights = []  # what each step is told to weigh the transport term by
    weights = TauSchedule.weights
    monkeypatch.setattr(TauSchedule, "weights", lambda tau, k: transport_weights.append(weights(tau, k)[1])
                        or weights(tau, k))

    few = load_dataset("synthetic", num_train=128, num_test=64, seed=0)  # three runs: keep them short

    def run(regime, method, **options):
        transport_weights.clear()
        result = train(tiny_config(regime=regime, method=method, epochs=1, **options), data=few, out=None, quiet=True)
        return result, set(transport_weights)

    e2e, sequential = get_regime("e2e"), get_regime("sequential")
    trgl, vangl = get_objective("trgl"), get_objective("vangl")
    regimes_before, objectives_before = regime_names(), objective_names()
    try:
        register(Regime("e2e", sequential.run, sequential.traits, sequential.help, sequential.epochs_for))
        register(Regime("sequential", e2e.run, e2e.traits, e2e.help))
        register(Regime("renamed-sequential", sequential.run, sequential.traits, "sequential, renamed"))
        register_objective(type("TransportUnderVanGLsName", (type(trgl),), {"name": "vangl"})())
        register_objective(type("NoTransportUnderTRGLsName", (type(vangl),), {"name": "trgl"})())
        register_objective(type("RenamedTRGL", (type(trgl),), {"name": "renamed-trgl"})())

        # sequential's loop and traits under e2e's name; vangl's name with TRGL's transport
        result, used = run("e2e", "vangl", epochs_step=1)
        assert [m["epochs"] for m in result.modules] == [1, 2, 3]  # the regime's epochs_for, module by module
        assert result.extra["plan"]["cache"]["mode"] == "host"  # needs_cache: a cache was planned
        assert result.extra["objective"]["transport"] and used == {1 / 2 / 5, 1 / 2 / 10}  # tau 10, halved first

        # a new regime name with sequential's traits; trgl's name without the transport term
        result, used = run("renamed-sequential", "trgl")
        assert len(result.modules) == 3 and result.extra["plan"]["cache"]["mode"] == "host"
        assert not result.extra["objective"]["transport"] and used == {0.0}

        # e2e's loop and traits under sequential's name: one module, no cache, no transport (the
        # regime has none) even for a new objective name that asks for it
        result, used = run("sequential", "renamed-trgl")
        assert len(result.modules) == 1 and result.extra["plan"]["cache"]["mode"] == "none"
        assert not result.extra["objective"]["transport"] and used == {0.0}
    finally:
        for regime in (e2e, sequential):
            register(regime)
        unregister("renamed-sequential")
        for objective in (trgl, vangl):
            register_objective(objective)
        unregister_objective("renamed-trgl")
    assert regime_names() == regimes_before and objective_names() == objectives_before
    assert get_regime("e2e") is e2e and get_objective("trgl") is trgl
