"""The validation split: held out of the training set (stratified, seeded, recorded), each module's head
scored on it, the best module and ``export --exit best`` chosen by it, and ``--val-fraction 0`` as before."""

from __future__ import annotations

import json

import pytest
import torch

import edgetrgl.training.regimes.parallel as parallel_regime
from edgetrgl import UserError, export_run, resume, train
from edgetrgl.cli.main import main
from edgetrgl.data import load_dataset
from edgetrgl.data.validation import split_validation
from edgetrgl.training.evaluation import evaluate_heads
from edgetrgl.training.results import RunResult, pick_best
from tests.conftest import tiny_config

# 4 classes of 60 training images: a quarter held out leaves 15 validation images per class
DATA = {"num_train": 240, "num_test": 64, "num_classes": 4, "image_size": 8}


def small(**overrides):
    return tiny_config(**{"modules": 2, "epochs": 1, "batch_size": 32, "dataset_options": DATA,
                          "val_fraction": 0.25, **overrides})


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---- the split ------------------------------------------------------------------------------------
def test_split_is_stratified_disjoint_complete_and_seeded():
    train_set, _, _ = load_dataset("synthetic", seed=0, **DATA)
    train, val, record = split_validation(train_set, 0.25, seed=3)
    assert torch.equal(torch.bincount(val.labels), torch.full((4,), 15))  # a quarter of every class
    assert torch.equal(torch.bincount(train.labels), torch.full((4,), 45))
    # disjoint and complete: the two parts are the training set, each image once
    rows = lambda images: {tuple(row.tolist()) for row in images.flatten(1)}  # noqa: E731
    assert not rows(train.images) & rows(val.images)
    assert rows(train.images) | rows(val.images) == rows(train_set.images)
    assert len(train) + len(val) == len(train_set) == 240
    assert not val.augment and train.augment  # validation images are scored unaugmented
    # same seed, same split; another seed, another split
    again = split_validation(train_set, 0.25, seed=3)
    assert torch.equal(again[1].images, val.images) and again[2] == record
    assert split_validation(train_set, 0.25, seed=4)[2]["sha256"] != record["sha256"]
    assert record == {"fraction": 0.25, "requested": 0.25, "seed": 3, "samples": 60, "train_samples": 180,
                      "sha256": record["sha256"]} and len(record["sha256"]) == 64


def test_auto_holds_out_a_tenth_only_where_every_class_keeps_ten():
    big, _, _ = load_dataset("synthetic", seed=0, num_train=1000, num_test=10)  # 100 per class: 10 held out
    tiny, _, _ = load_dataset("synthetic", seed=0, num_train=500, num_test=10)  # 50 per class: 5 would be too few
    assert split_validation(big, "auto", 0)[2]["fraction"] == 0.1
    assert split_validation(big, "auto", 0)[2]["samples"] == 100
    train, val, record = split_validation(tiny, "auto", 0)
    assert val is None and train is tiny and record["fraction"] == 0.0


def test_a_fraction_that_starves_a_class_is_one_line(capsys):
    with pytest.raises(UserError, match="leaves class"):
        split_validation(load_dataset("synthetic", seed=0, num_train=8, num_test=4, num_classes=4)[0], 0.9, 0)
    assert main(["train", "--dataset", "synthetic", "--val-fraction", "1.5", "--out", ""]) == 2
    assert "--val-fraction must be auto or a number in [0, 1)" in _one_error_line(capsys)


# ---- runs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("val") / "run"
    result = train(small(out=str(out), cache="host"), quiet=True)
    return out, result


def test_the_split_is_recorded_and_every_module_scored_through_the_frozen_modules(seq_run):
    out, result = seq_run
    config, summary = (json.loads((out / name).read_text()) for name in ("config.json", "summary.json"))
    train_set, test_set, _ = load_dataset("synthetic", seed=0, **DATA)
    _, val, record = split_validation(train_set, 0.25, seed=0)
    assert config["validation"] == summary["validation"] == record
    assert summary["best_module_chosen_by"] == "validation"
    # the sequential regime scores each head on the validation images as they flow through the frozen
    # modules in eval mode (its evaluation cache), exactly as a plain pass of the finished network does
    net = result.net.to("cpu")
    assert [m["val_accuracy"] for m in summary["modules"]] == evaluate_heads(net, val, 32, "cpu")
    assert [m["test_accuracy"] for m in summary["modules"]] == evaluate_heads(net, test_set, 32, "cpu")
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in logged if r.get("event") == "module"] == [m["val_accuracy"] for m in summary["modules"]]


def test_resume_with_another_fraction_or_another_split_is_refused(seq_run, tmp_path, capsys):
    out, _ = seq_run
    unfinished = tmp_path / "run"
    unfinished.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl"):  # as a run stopped after its last checkpoint
        (unfinished / name).write_bytes((out / name).read_bytes())
    assert main(["train", "--resume", str(unfinished), "--val-fraction", "0.1"]) == 2
    assert "--val-fraction 0.1 contradicts the saved run (0.25)" in _one_error_line(capsys)
    # the same settings on other training data would split differently: refused, nothing touched
    train_set, test_set, spec = load_dataset("synthetic", seed=1, **DATA)
    before = sorted((p.name, p.stat().st_size) for p in unfinished.iterdir())
    with pytest.raises(UserError, match=r"held out 0.25 of its training set .* continue it with --val-fraction 0.25"):
        resume(unfinished, data=(train_set, test_set, spec), quiet=True)
    assert sorted((p.name, p.stat().st_size) for p in unfinished.iterdir()) == before


def _disagreeing_scores(monkeypatch):
    """Module 1 wins on the test set, module 2 on the validation part (told apart by their sizes)."""
    def fake(net, dataset, batch_size, device):
        return [0.9, 0.1] if len(dataset) == DATA["num_test"] else [0.2, 0.8]

    monkeypatch.setattr(parallel_regime, "evaluate_heads", fake)


def test_best_module_and_export_best_follow_validation_accuracy(monkeypatch, tmp_path, capsys):
    _disagreeing_scores(monkeypatch)
    out = tmp_path / "run"
    result = train(small(regime="parallel", out=str(out)), quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_module"] == {"module": 2, "test_accuracy": 0.1, "val_accuracy": 0.8}
    assert summary["best_module_chosen_by"] == "validation" and result.best_module["module"] == 2
    assert export_run(out, exit="best", out=tmp_path / "best.ts").exit_module == 2
    assert main(["export", str(out), "--out", str(tmp_path / "cli.ts")]) == 0
    printed = capsys.readouterr()
    assert "exported module 2 of 2" in printed.out and "warning" not in printed.err


def test_val_fraction_0_chooses_on_the_test_set_as_before_and_export_warns(monkeypatch, tmp_path, capsys):
    _disagreeing_scores(monkeypatch)
    out = tmp_path / "run"
    result = train(small(regime="parallel", out=str(out), val_fraction=0), quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_module"] == {"module": 1, "test_accuracy": 0.9}
    assert summary["best_module_chosen_by"] == "test" and summary["validation"]["samples"] == 0
    assert all("val_accuracy" not in m for m in summary["modules"])
    assert main(["export", str(out), "--out", str(tmp_path / "cli.ts")]) == 0
    printed = capsys.readouterr()
    assert "exported module 1 of 2" in printed.out
    assert [line for line in printed.err.splitlines() if line.strip()] == [
        f"warning: {out} was trained without a validation split: --exit best was chosen on the test set, so its "
        f"test accuracy is optimistic (train with --val-fraction above 0)"]


def test_val_fraction_0_trains_on_the_whole_training_set_bit_for_bit():
    """Without a split the run sees the very training set it was given: the same steps, the same weights
    as a run on data too small for ``auto`` to split (which holds nothing out either)."""
    data = load_dataset("synthetic", seed=0, **DATA)
    off = train(small(val_fraction=0), data=data, quiet=True)
    auto = train(small(val_fraction="auto"), data=data, quiet=True)  # 60 per class: auto holds none out
    on = train(small(), data=data, quiet=True)
    assert [m["test_accuracy"] for m in off.modules] == [m["test_accuracy"] for m in auto.modules]
    assert all(torch.equal(a, b) for a, b in zip(off.net.state_dict().values(), auto.net.state_dict().values()))
    assert not all(torch.equal(a, b) for a, b in zip(off.net.state_dict().values(), on.net.state_dict().values()))


def test_pick_best_prefers_validation_and_needs_it_for_every_module():
    modules = [{"module": 1, "test_accuracy": 0.9, "val_accuracy": 0.5},
               {"module": 2, "test_accuracy": 0.6, "val_accuracy": 0.7}]
    assert pick_best(modules) == (1, "validation")
    assert pick_best([{**m, "val_accuracy": None} for m in modules]) == (0, "test")
    result = RunResult(tiny_config(), None, {}, modules, 1.0)
    assert result.best_module["module"] == 2 and result.chosen_by == "validation"
