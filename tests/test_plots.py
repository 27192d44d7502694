"""Plots: each function writes a real PNG, and a missing matplotlib is one clear user error."""

import builtins
import importlib.util
import math

import pytest

from edgetrgl.errors import UserError
from edgetrgl.plots import mean_ci95, plot_module_curves, plot_run, run_title, t_quantile_975

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")


def _is_png(path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


@needs_matplotlib
def test_module_curves_single_runs_seeds_and_reference(tmp_path):
    runs = {
        "VanGL": [[0.80, 0.85, 0.84, 0.80], [0.78, 0.86, 0.83, 0.79], [0.81, 0.84, 0.85, 0.82]],  # mean + band
        "TRGL": [0.78, 0.86, 0.90, 0.91],  # one run
        "deeper": [0.7] * 27,  # another length
    }
    out = plot_module_curves(runs, tmp_path / "sub" / "curves.png", title="test", references={"e2e": 0.88})
    assert out == tmp_path / "sub" / "curves.png"
    assert _is_png(out)


@needs_matplotlib
def test_module_curves_rejects_ragged_seeds(tmp_path):
    with pytest.raises(ValueError, match="same, non-zero number of modules"):
        plot_module_curves({"x": [[0.1, 0.2], [0.1]]}, tmp_path / "x.png")
    with pytest.raises(ValueError):
        plot_module_curves({}, tmp_path / "x.png")


@needs_matplotlib
def test_plot_run_from_summary(tmp_path):
    summary = {
        "config": {"model": "resnet20", "regime": "sequential", "method": "trgl", "tau": 1.0,
                   "tau_schedule": "double", "train_fraction": 0.02, "dataset": "mnist5k"},
        "dataset": {"name": "mnist5k"},
        "modules": [{"module": k + 1, "test_accuracy": a} for k, a in enumerate([0.7, 0.8, 0.86, 0.85])],
    }
    assert _is_png(plot_run(summary, tmp_path / "run.png"))
    with pytest.raises(UserError, match="no module test accuracies"):
        plot_run({"modules": []}, tmp_path / "empty.png")


def test_the_title_names_the_transport_term_of_any_objective():
    modules = [{"module": 1, "test_accuracy": 0.5}, {"module": 2, "test_accuracy": 0.6}]
    cfg = {"model": "resnet20", "regime": "sequential", "tau": 10.0, "tau_schedule": "double", "dataset": "mnist5k"}

    def title(method, transport=None):
        summary = {"config": {**cfg, "method": method}, "modules": modules}
        if transport is not None:
            summary["objective"] = {"method": method, "transport": transport}
        return run_title(summary)

    assert title("trgl") == "resnet20 / sequential trgl (tau 10.0, double) / mnist5k"  # a summary before the registry
    assert title("infopro", True) == "resnet20 / sequential infopro + transport (tau 10.0, double) / mnist5k"
    assert title("infopro", False) == title("infopro") == "resnet20 / sequential infopro / mnist5k"
    assert title("trgl", False) == "resnet20 / sequential trgl / mnist5k"  # --transport off


@needs_matplotlib
def test_plot_run_from_a_real_run_folder(tmp_path):
    import json

    from tests.conftest import tiny_config
    import edgetrgl

    edgetrgl.train(tiny_config(epochs=0, out=str(tmp_path / "run")), quiet=True)  # untrained: fast, still a real summary
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert _is_png(plot_run(summary, tmp_path / "run.png"))


def test_missing_matplotlib_is_a_user_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(UserError, match=r"plotting needs matplotlib: pip install 'edgetrgl\[plot\]'"):
        plot_module_curves({"a": [0.5]}, tmp_path / "a.png")
    with pytest.raises(UserError, match="plotting needs matplotlib"):
        plot_run({"modules": [{"module": 1, "test_accuracy": 0.5}]}, tmp_path / "b.png")


def test_confidence_interval_uses_student_t():
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(2) == pytest.approx(4.303)
    assert t_quantile_975(1000) == pytest.approx(1.96)
    mean, half = mean_ci95([1.0, 2.0, 3.0])
    assert mean == pytest.approx(2.0)
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    assert math.isnan(mean_ci95([0.5])[1])
