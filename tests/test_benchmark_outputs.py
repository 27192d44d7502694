"""Benchmarks write recorded results only when told: ``--record`` (benchmarks/results/) or ``--results DIR``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common  # noqa: E402


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    _common.add_output_args(parser)
    return parser.parse_args(argv)


def test_output_folder_is_none_unless_told():
    assert _common.output_folder(parse()) is None
    assert _common.output_folder(parse("--record")) == _common.RESULTS
    assert _common.output_folder(parse("--results", "elsewhere")) == Path("elsewhere")
    with pytest.raises(SystemExit):
        parse("--record", "--results", "elsewhere")  # one or the other


def test_write_results_without_a_folder_prints_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_common, "machine", lambda: {"platform": "p", "cpu": "c", "nproc": 2, "ram_bytes": 2**30,
                                                     "torch": "t", "python": "3", "edgetrgl_commit": "abc",
                                                     "date": "today"})
    monkeypatch.setattr(_common, "RESULTS", tmp_path / "results")
    assert _common.write_results("trial", {"x": 1}, "| a |\n", None) is None
    assert "| a |" in capsys.readouterr().out and not (tmp_path / "results").exists()
    json_path, md_path = _common.write_results("trial", {"x": 1}, "| a |\n", tmp_path / "mine")
    assert json_path == tmp_path / "mine" / "trial.json" and '"x": 1' in json_path.read_text()
    assert "| a |" in md_path.read_text()




# writes only to the file its caller names (argv[1]): a before/after check of a refactor, no recorded results
NOT_A_BENCHMARK = {"seed_parity.py"}


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")
                                          if not p.name.startswith("_") and p.name not in NOT_A_BENCHMARK))
def test_every_benchmark_that_writes_files_takes_the_output_flags(script):
    text = (ROOT / "benchmarks" / script).read_text()
    if not re.search(r"write_results\(|\.write_text\(|json\.dump\(", text):
        return
    assert "add_output_args(parser)" in text and "output_folder(args)" in text, script
    assert not re.search(r"RESULTS /|/ \"results\"", text), f"{script} writes into benchmarks/results/ directly"
