"""benchmarks/accuracy: one harness for every study. The runner appends a row per run and skips rows it
has, writes nowhere recorded unless told, the report turns rows into intervals, "not run yet", a chart
and the README's generated blocks, and paper_scale.py keeps to its budget.

Everything runs on tiny IDX files of our own (tests/_idx_files.py) and a width-4 ResNet-20: seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _idx_files import fake_fashion_mnist

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "accuracy"
sys.path.insert(0, str(HARNESS))

import report  # noqa: E402
import run  # noqa: E402
import study_fashionmnist as fm  # noqa: E402

TINY = '{"model_options": {"width": 4}}'


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"), n_train=500, n_test=100, fill=None)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_runner_appends_one_row_per_run_and_skips_what_it_has(tmp_path, data_dir, capsys):
    results = tmp_path / "results"
    argv = ["fashionmnist", "--part", "small2", "--seeds", "1", "--epochs", "1", "--max-runs", "2", "--data-dir",
            str(data_dir), "--results", str(results), "--set", TINY, "--threads", "1"]
    assert run.main(argv) == 0
    rows = _rows(results / "runs.jsonl")
    assert [r["method"] for r in rows] == ["e2e", "vangl"]  # the part's order: e2e, vangl, trgl-tau1
    e2e, vangl = rows
    assert len(e2e["test_accuracy"]) == 1 and len(vangl["test_accuracy"]) == 9  # block-wise: 9 modules
    assert vangl["config"]["modules"] == 9 and vangl["config"]["model_options"] == {"width": 4}
    assert (e2e["train_size"], e2e["test_size"]) == (10, 100)  # 2% of 500, stratified: one image per class
    assert vangl["best"] == max(vangl["test_accuracy"]) and vangl["last"] == vangl["test_accuracy"][-1]
    assert vangl["test_accuracy"][vangl["best_module"] - 1] == vangl["best"]
    assert 0 < vangl["estimated_peak_bytes"] < e2e["estimated_peak_bytes"]  # one block at a time
    assert run.main(argv) == 0  # resumes: the two rows are kept, the part's last run is added
    again = _rows(results / "runs.jsonl")
    assert again[:2] == rows and [r["method"] for r in again[2:]] == ["trgl-tau1"]
    assert run.main([argv[0], "--part", "small2_ours", *argv[3:]]) == 0
    again = _rows(results / "runs.jsonl")
    assert [r["method"] for r in again[3:]] == ["trgl"]
    assert again[2]["tau"] == 1.0 and again[3]["tau"] == 10.0  # the paper's, ours (the library default)
    capsys.readouterr()
    assert run.main(argv + ["--dry-run"]) == 0
    assert "0 run(s) to do, 4 already" in capsys.readouterr().err
    assert len(_rows(results / "sessions.jsonl")) == 3  # the dry run starts nothing


def test_quick_runs_into_a_temporary_folder_never_the_recorded_one(tmp_path, data_dir, monkeypatch, capsys):
    recorded = tmp_path / "recorded"
    monkeypatch.setattr(fm, "RESULTS", recorded)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert run.main(["fashionmnist", "--quick", "--part", "small2_ours", "--data-dir", str(data_dir), "--max-runs", "1",
                     "--threads", "1"]) == 0
    assert not recorded.exists()
    written = [p for p in tmp_path.glob("accuracy-fashionmnist-*/runs.jsonl")]
    assert len(written) == 1
    (row,) = _rows(written[0])
    assert row["id"].startswith("small2|resnet20|f=0.02|sequential|K=block|trgl|ours|e=1|seed=0")
    assert row["config"]["model_options"] == {"width": 4}


def test_unknown_study_or_part_is_one_line_and_exit_2(tmp_path, capsys):
    for argv in (["cifar"], ["fashionmnist", "--part", "nope", "--results", str(tmp_path)]):
        with pytest.raises(SystemExit) as stop:
            run.main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: unknown")


def test_methods_this_checkout_lacks_are_skipped_not_failed():
    methods = fm.available_methods()
    assert {"vangl", "trgl"} <= methods
    cells = run.cells_of(fm, ["small10"], 1, 1)
    assert set(fm.LOCAL_OBJECTIVES) <= {c["method"] for c in cells}  # named whether or not they exist yet
    for c in cells:
        assert fm.runnable(c) == (c["config"]["method"] in methods)


def _fm_rows(part, accs_by_method, **setting):
    rows = []
    for method, accs, peak in accs_by_method:
        for seed, acc in enumerate(accs):
            c = fm.cell(part, seed, method=method, **setting)
            rows.append({**{k: c[k] for k in fm.LABELS}, "id": c["id"], "part": part, "config": c["config"],
                         "train_size": 1200, "test_size": 10000, "test_accuracy": [acc - 0.1, acc], "last": acc,
                         "best": acc, "best_module": 2, "estimated_peak_bytes": peak, "wall_time_s": 10.0})
    return rows


def test_report_gives_intervals_not_run_yet_a_chart_and_the_readme_blocks(tmp_path, capsys):
    results = tmp_path / "results"
    small = dict(fraction=0.02, k="block", epochs=5, test_images=fm.SMALL_TEST)  # the small2 part's cells
    rows = _fm_rows("small2", [("vangl", (0.60, 0.64, 0.62), 100 * 2**20), ("trgl-tau1", (0.66, 0.68, 0.70), 110 * 2**20),
                               ("e2e", (0.70, 0.71, 0.72), 400 * 2**20)], **small)
    results.mkdir()
    (results / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"cut short')
    readme = tmp_path / "README.md"
    readme.write_text("# x\nbefore\n<!-- generated:summary -->\nold table\n<!-- /generated:summary -->\nafter\n"
                      "<!-- generated:part:small2 --><!-- /generated:part:small2 -->\n")
    assert report.main(["fashionmnist", "--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\nbefore\n<!-- generated:summary -->\n")
    assert text.endswith("<!-- /generated:summary -->\nafter\n<!-- generated:part:small2 -->\n### small2:"
                         + text.split("### small2:", 1)[1].split("<!--")[0] + "<!-- /generated:part:small2 -->\n")
    assert "| vangl | 3/5 | 62.0 ± 5.0 |" in text and "small10" not in text.split("after")[0]  # parts that have runs
    tables = (results / "tables.md").read_text()
    # mean 62.0, sd 2.0, t(2) = 4.303: half-width 4.303 * 2 / sqrt(3) = 5.0
    assert "| vangl | 3/5 | 62.0 ± 5.0 |" in tables and "| trgl | 0/5 | not run yet |" in tables
    # paired by seed: trgl-tau1 - vangl = 6, 4, 8 points: mean 6.0, half-width 4.303 * 2 / sqrt(3) = 5.0
    assert "6.0 ± 5.0 (3 seeds)" in tables
    assert (results / "accuracy_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {s["method"] for s in json.loads((results / "summary.json").read_text())} == {"vangl", "trgl-tau1", "e2e"}
    # without --record or --results: printed, nothing written
    assert report.main(["fashionmnist"]) == 0 and "# Fashion-MNIST accuracy study" in capsys.readouterr().out


def test_a_readme_block_naming_no_table_is_an_error_not_silence(tmp_path, capsys):
    (tmp_path / "runs.jsonl").write_text("")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated:nope -->\n<!-- /generated:nope -->\n")
    with pytest.raises(SystemExit) as stop:
        report.main(["fashionmnist", "--results", str(tmp_path), "--readme", str(readme)])
    assert stop.value.code == 2 and "no table named 'nope'" in capsys.readouterr().err
    assert readme.read_text() == "<!-- generated:nope -->\n<!-- /generated:nope -->\n"  # left as it was


def test_paper_scale_keeps_to_its_budget(tmp_path, data_dir):
    results = tmp_path / "ps"
    common = [sys.executable, str(HARNESS / "fashionmnist" / "paper_scale.py"), "--model", "resnet20", "--ks", "2",
              "--epochs", "1", "--fraction", "0.05", "--set", TINY, "--device", "cpu", "--data-dir", str(data_dir),
              "--out", str(results)]
    env = {"PYTHONPATH": ":".join(sys.path), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(common + ["--budget-s", "120", "--methods", "e2e,trgl-tau1"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(results / "runs.jsonl")
    assert [(r["method"], r["K"], r["regime"]) for r in rows] == [("e2e", 1, "e2e"), ("trgl-tau1", 2, "parallel")]
    assert rows[1]["config"]["lr"] == 0.003 and rows[1]["config"]["label_smoothing"] == 0.1  # configs/paper.toml
    assert rows[0]["config"]["lr"] == 0.1  # the paper's e2e learning rate
    # a budget too short for any run: it stops cleanly, writes no row, and says what is left
    proc = subprocess.run(common + ["--budget-s", "0.01", "--methods", "vangl", "--seeds", "1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(results / "runs.jsonl")) == 2
    assert "finished 0 run(s); 1 left" in proc.stderr


def test_shards_split_the_grid_between_processes(tmp_path, capsys):
    listed = []
    for shard in ("0/2", "1/2"):
        assert run.main(["fashionmnist", "--part", "small2", "--dry-run", "--shard", shard, "--results", str(tmp_path)]) == 0
        listed.append(capsys.readouterr().out.split())
    whole = [c["id"] for c in run.cells_of(fm, ["small2"])]
    assert sorted(listed[0] + listed[1]) == sorted(whole) and not set(listed[0]) & set(listed[1])


def test_model_filter_keeps_only_that_family(tmp_path, capsys):
    argv = ["fashionmnist", "--part", "families", "--seeds", "1", "--dry-run", "--results", str(tmp_path)]
    assert run.main(argv + ["--model", "vit_tiny"]) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == 3 and all("|vit_tiny|" in i for i in ids)
    assert run.main(argv) == 0
    assert len(capsys.readouterr().out.split()) == 9


def test_report_puts_the_estimate_beside_the_measurement(tmp_path):
    folder = tmp_path / "measured"
    assert fm.measured_table(folder) == ""  # nothing measured: no table
    folder.mkdir()

    def bench(k, peaks):
        return {"setting": {"model": "resnet20", "modules": k, "num_blocks": 9},
                "results": [{"method": m, "peak_bytes": v * 2**20, "peak_rss_bytes": 2 * v * 2**20} for m, v in peaks]}

    for k, measured, estimated in ((4, 100, 110), (9, 50, 45)):
        (folder / f"resnet20_k{k}.json").write_text(json.dumps(bench(k, [("e2e", 200), ("sequential-trgl", measured)])))
        (folder / f"resnet20_k{k}.estimate.json").write_text(json.dumps(bench(k, [("e2e", 200), ("sequential-trgl", estimated)])))
    table = fm.measured_table(folder)
    assert "| resnet20 | 4 | sequential-trgl | 110 | 100 | 1.10 | 200 |" in table
    assert "| resnet20 | block | sequential-trgl | 45 | 50 | 0.90 | 100 |" in table
    assert table.count("| e2e |") == 1  # e2e is in both files, shown once


def test_transport_on_top_of_a_local_objective_is_a_method_of_its_own():
    cells = run.cells_of(fm, ["small10_transport"], 1, 1)
    assert {c["method"] for c in cells} == {m + fm.TRANSPORT for m in fm.LOCAL_OBJECTIVES}
    dgl = next(c for c in cells if c["method"] == "dgl+transport")
    assert dgl["config"]["method"] == "dgl" and dgl["config"]["transport"] == "on"
    assert fm.runnable(dgl)
    assert fm.TrainConfig(**dgl["config"]).transport == "on"  # a config the library takes as it is


def test_report_pairs_each_objective_with_its_transport_variant():
    def rows(method, accs):
        out = []
        for seed, acc in enumerate(accs):
            c = fm.cell("small10", seed, fraction=0.1, k=4, epochs=3, method=method, test_images=fm.SMALL_TEST)
            out.append({**{k: c[k] for k in fm.GROUP}, "seed": seed, "last": acc, "config": c["config"]})
        return out

    groups = fm.group_rows(rows("dgl", (0.80, 0.82, 0.78)) + rows("dgl+transport", (0.81, 0.84, 0.78)))
    table = fm.transport_table(groups)
    assert "| dgl | 80.0 ± 5.0 | 81.0 ± 7.5 |" in table  # sd 2 and 3 over 3 seeds: t(2) = 4.303
    assert "1.0 ± 2.5 (3 seeds)" in table  # differences 1, 2, 0 points: sd 1
    assert fm.transport_table(fm.group_rows(rows("dgl", (0.8,)))) == ""


def test_quick_is_the_studys_tiny_flavour_one_seed_one_epoch(tmp_path, capsys):
    assert run.main(["fashionmnist", "--quick", "--part", "small2", "--dry-run", "--results", str(tmp_path)]) == 0
    ids = capsys.readouterr().out.splitlines()
    assert len(ids) == 3 and all("|e=1|seed=0|" in i and i.endswith('model_options={"width": 4}') for i in ids)


def test_fashion_mnist_test_part_is_a_seeded_random_stratified_sample(data_dir):
    """A study's test part: n / N of every class drawn at random (not each class's first images, the
    files being in no random order), the same images for every seed and cell."""
    import torch

    from edgetrgl import TrainConfig
    from edgetrgl.data import load_dataset

    full = load_dataset("fashionmnist", data_dir=str(data_dir), augment=False)[1]  # 100 images, labels 0..9 cycling
    parts = [fm.load_data(TrainConfig(dataset="fashionmnist", seed=seed), {"test_images": 50}, str(data_dir), {})[1]
             for seed in (0, 1)]
    assert torch.equal(parts[0].images, parts[1].images)  # whatever the run's seed
    assert torch.equal(torch.bincount(parts[0].labels), torch.full((10,), 5))  # stratified: 5 per class
    rows = lambda images: {tuple(row.tolist()) for row in images.flatten(1)}  # noqa: E731
    firsts = torch.cat([torch.nonzero(full.labels == c).flatten()[:5] for c in range(10)])
    assert rows(parts[0].images) <= rows(full.images)
    assert rows(parts[0].images) != rows(full.images[firsts])  # not the first five of each class


def _plateau_row(method: str, epochs: int, lr: float, seed: int, val: float, test: float = 0.8) -> dict:
    return {"id": f"{method}|{epochs}|{lr}|{seed}", "part": "plateau", "method": method, "epochs": epochs,
            "recipe": f"fresh-lr{lr}", "seed": seed, "val_accuracy": [0.1, val], "last": test, "wall_time_s": 1.0}


def test_plateau_picks_the_lr_on_validation_then_doubles_epochs_until_they_stop_paying():
    import fashionmnist_plateau as plateau

    rows = [_plateau_row("vangl", 10, lr, 0, val, test=0.99 if lr == 0.1 else 0.5)  # test would pick 0.1: it must not
            for lr, val in ((0.025, 0.80), (0.05, 0.84), (0.1, 0.82))]
    assert plateau.chosen_lr("vangl", rows[:2]) is None  # the grid has not finished
    assert plateau.chosen_lr("vangl", rows) == 0.05
    assert plateau.sweep("vangl", 0.05, rows)[:2] == ([5], None)  # no seed of 5 epochs yet
    rows += [_plateau_row("vangl", 5, 0.05, s, 0.80) for s in range(3)]
    rows += [_plateau_row("vangl", 10, 0.05, s, 0.84) for s in (1, 2)]
    assert plateau.sweep("vangl", 0.05, rows)[:2] == ([5, 10, 20], None)  # +4 points: 20 epochs are planned
    rows += [_plateau_row("vangl", 20, 0.05, s, 0.842) for s in range(2)]
    assert plateau.sweep("vangl", 0.05, rows)[:2] == ([5, 10, 20], None)  # waits for every seed
    rows += [_plateau_row("vangl", 20, 0.05, 2, 0.842)]
    planned, converged, means = plateau.sweep("vangl", 0.05, rows)
    assert (planned, converged) == ([5, 10, 20], 10)  # +0.2 points did not pay: 10 is converged, 40 never runs
    assert means[20] == pytest.approx(0.842)
    plateau.prepare(rows)
    try:
        ids = [c["id"] for c in fm.PARTS["plateau"][3](0, 5, False)]
    finally:
        plateau.prepare([])
    assert [i.split("|")[6:8] for i in ids if "vangl" in i] == [["fresh-lr0.05", "e=5"], ["fresh-lr0.05", "e=10"],
                                                                ["fresh-lr0.05", "e=20"]]
    assert not any("|e2e|" in i for i in ids)  # e2e's grid has not run: none of its sweep is planned
    assert "| vangl − e2e | not converged yet |" in plateau.verdict_table(rows)


def test_the_plateau_chart_draws_the_sweep_and_the_converged_runs_memory(tmp_path):
    import fashionmnist_plateau as plateau

    rows = [_plateau_row("vangl", 10, lr, 0, val) for lr, val in ((0.025, 0.80), (0.05, 0.84), (0.1, 0.82))]
    rows += [_plateau_row("vangl", e, 0.05, s, val) for e, val in ((5, 0.80), (10, 0.84), (20, 0.842))
             for s in range(3) if (e, s) != (10, 0)]
    measured = {"vangl": {"peak_rss_bytes": 900 * 2**20, "peak_bytes": 100 * 2**20}}
    assert plateau.chart(rows, measured, tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plateau.chart([], measured, tmp_path / "none.png") is None  # nothing run: no chart


def test_a_row_records_its_commit_and_the_process_and_tensor_peaks(tmp_path, data_dir, capsys):
    results = tmp_path / "results"
    assert run.main(["fashionmnist", "--part", "plateau_lr", "--epochs", "1", "--max-runs", "1", "--data-dir",
                     str(data_dir), "--results", str(results), "--set", TINY, "--threads", "1"]) == 0
    (row,) = _rows(results / "runs.jsonl")
    assert row["commit"] == run.COMMIT and row["commit"] not in ("", "unknown")
    assert row["process_peak_bytes"] > 50 * 2**20 and 0 < row["tensor_peak_bytes"] < row["process_peak_bytes"]
    assert row["config"]["cache"] == "none" and row["config"]["lr"] == 0.025  # fresh augmentation, the grid's first lr
    capsys.readouterr()


def test_a_cell_claimed_by_a_live_process_is_left_to_it(tmp_path):
    import hashlib
    import os

    claim = tmp_path / ".claims" / hashlib.sha1(b"cell").hexdigest()
    assert not run.claimed_by_another(tmp_path, "cell") and claim.read_text() == str(os.getpid())  # ours now
    assert not run.claimed_by_another(tmp_path, "cell")  # still ours
    claim.write_text("1")  # pid 1 is alive: another loop is running it
    assert run.claimed_by_another(tmp_path, "cell")
    claim.write_text(str(2**22 + 12345))  # a process that is gone: the claim is taken over
    assert not run.claimed_by_another(tmp_path, "cell")
