"""The memory-time chart of ``edgetrgl bench``: the Pareto front, method variants with step options."""

from __future__ import annotations

import json
import re

import pytest

from edgetrgl.bench import parse_methods
from edgetrgl.bench.pareto import mark_front, pareto_front
from edgetrgl.bench.variants import Method, parse_method
from edgetrgl.cli.main import main
from edgetrgl.errors import UserError

TINY = ["--model", "resnet20", "--model-option", "width=4", "--image-size", "16", "--batch-size", "16",
        "--modules", "3", "--device", "cpu"]


def test_front_keeps_the_points_nothing_beats_on_both_axes():
    points = [(100, 2.0), (50, 3.0), (80, 3.5), (120, 1.0), (130, 1.0)]
    assert pareto_front(points) == [0, 1, 3]  # (80, 3.5) beaten by (50, 3.0); (130, 1.0) by (120, 1.0)


def test_front_of_one_point_and_of_none():
    assert pareto_front([(7.0, 7.0)]) == [0]
    assert pareto_front([]) == []


def test_front_with_ties():
    assert pareto_front([(10, 1.0), (10, 1.0), (20, 0.5)]) == [0, 1, 2]  # equal points do not beat each other
    assert pareto_front([(10, 1.0), (10, 2.0)]) == [0]  # same memory, slower: off
    assert pareto_front([(10, 1.0), (12, 1.0)]) == [0]  # same time, larger: off


def test_mark_front_skips_methods_without_figures():
    report = {"results": [{"method": "e2e", "peak_bytes": 100, "time_per_sample_s": 1.0},
                          {"method": "checkpoint", "peak_bytes": None, "time_per_sample_s": None},
                          {"method": "sequential-trgl", "peak_bytes": 50, "time_per_sample_s": 1.5}]}
    mark_front(report)
    assert report["pareto"] == {"x": "peak_bytes", "y": "time_per_sample_s", "front": ["sequential-trgl", "e2e"]}
    assert [r["on_pareto_front"] for r in report["results"]] == [True, False, True]


def test_method_names_parse_into_step_options():
    assert parse_method("sequential-trgl+bf16+ckpt") == Method("sequential-trgl", True, "bf16")
    assert parse_method("sequential-trgl+bf16+ckpt").name == "sequential-trgl+ckpt+bf16"
    assert parse_method("e2e+fp16").step_options() == {"checkpoint_blocks": False, "precision": "fp16"}
    assert parse_methods("sequential-trgl+ckpt, e2e+bf16, checkpoint, sequential-trgl+ckpt") == [
        "e2e", "checkpoint", "e2e+bf16", "parallel-vangl", "parallel-trgl", "sequential-vangl", "sequential-trgl",
        "sequential-trgl+ckpt"]


@pytest.mark.parametrize("name, message", [
    ("sequential-trgl+zip", "unknown step option 'zip'"),
    ("e2e+ckpt", "+ckpt is for edgetrgl's methods"),
    ("sequential-trgl+bf16+fp16", "sets precision twice"),
])
def test_bad_variant_is_a_user_error(name, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_method(name)


@pytest.mark.parametrize("compare, message", [
    ("e2e,sequential-zip+ckpt", "--compare takes e2e, checkpoint, offload, or parallel-/sequential-<objective>"),
    ("checkpoint+ckpt", "--compare: method 'checkpoint+ckpt': +ckpt is for edgetrgl's methods"),
])
def test_bad_compare_is_one_line_and_exit_2(compare, message, capsys):
    assert main(["bench", "--estimate", *TINY, "--compare", compare]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_estimate_chart_and_json_carry_the_front(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png, out = tmp_path / "out.png", tmp_path / "out.json"
    compare = "e2e,checkpoint,sequential-trgl+ckpt,sequential-trgl+bf16,sequential-trgl+ckpt+bf16"
    assert main(["bench", *TINY, "--estimate", "--compare", compare, "--plot", str(png), "--json", str(out)]) == 0
    assert "Pareto front" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out.read_text())
    results = {r["method"]: r for r in report["results"]}
    assert report["pareto"]["x"] == "peak_bytes" and report["pareto"]["y"] == "flops_per_sample"
    # the step options change what they should: ckpt trades FLOPs for memory, bf16 halves activations
    plain, ckpt, bf16 = (results[m] for m in ("sequential-trgl", "sequential-trgl+ckpt", "sequential-trgl+bf16"))
    assert ckpt["peak_bytes"] < plain["peak_bytes"] and ckpt["flops_per_sample"] > plain["flops_per_sample"]
    assert bf16["peak_bytes"] < plain["peak_bytes"] and bf16["flops_per_sample"] == plain["flops_per_sample"]
    assert results["checkpoint"]["flops_per_sample"] > results["e2e"]["flops_per_sample"]
    # the front, recomputed from the figures by hand: nothing on it is beaten, everything off it is
    figures = {m: (r["peak_bytes"], r["flops_per_sample"]) for m, r in results.items()}
    beaten = {m for m, (x, y) in figures.items()
              if any(ox <= x and oy <= y and (ox, oy) != (x, y) for ox, oy in figures.values())}
    assert set(report["pareto"]["front"]) == set(figures) - beaten
    assert [r["on_pareto_front"] for r in report["results"]] == [m not in beaten for m in results]
    assert "sequential-trgl+ckpt+bf16" in report["pareto"]["front"]  # the smallest point is always on it
    assert "e2e" in report["pareto"]["front"]  # the fewest FLOPs: nothing does less work
    # torch's checkpointing recomputes every block; +ckpt keeps the last block's activations and is smaller
    assert "checkpoint" not in report["pareto"]["front"]
