"""The command line end to end, and bad input: one clear line, exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest

TINY = ["--model", "resnet20", "--dataset", "synthetic", "--modules", "2", "--epochs", "1", "--batch-size", "64",
        "--device", "cpu", "--quiet"]


def edgetrgl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgetrgl.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_train_writes_a_complete_run_folder(tmp_path):
    out = tmp_path / "run"
    toml = tmp_path / "run.toml"
    toml.write_text('model_options = { width = 4 }\ndataset_options = { num_train = 256, num_test = 128 }\ntau = 0.5\n')
    proc = edgetrgl("train", *TINY, "--config", str(toml), "--out", str(out), "--budget", "1.5GiB",
                    "--plot", str(tmp_path / "curve.png"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["tau"] == 0.5  # from the file
    assert summary["config"]["modules"] == 2  # from the flags
    assert summary["config"]["budget"] == int(1.5 * 2**30)
    assert [m["module"] for m in summary["modules"]] == [1, 2]
    assert all(0.0 <= m["test_accuracy"] <= 1.0 for m in summary["modules"])
    assert summary["best_module"]["module"] in (1, 2) and summary["wall_time_s"] > 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {(r["module"], r["epoch"]) for r in records if r["event"] == "epoch"} == {(1, 1), (2, 1)}
    assert all(0.0 < r["train_accuracy"] <= 1.0 for r in records if r["event"] == "epoch")
    assert (out / "model.pt").exists() and (out / "config.json").exists()
    assert not (out / "cache").exists() or not any((out / "cache").iterdir())

    # the Python API reads it back and gets the same accuracies
    from edgetrgl import evaluate, load_dataset, load_run
    run = load_run(out)
    _, test, _ = load_dataset("synthetic", num_train=256, num_test=128, seed=0)
    assert evaluate(run.net, test) == [m["test_accuracy"] for m in summary["modules"]]

    before = {name: (out / name).read_bytes() for name in ("summary.json", "model.pt", "config.json", "metrics.jsonl")}
    again = edgetrgl("train", *TINY, "--out", str(out))  # never clobber a finished run silently
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert {name: (out / name).read_bytes() for name in before} == before  # not a byte of the run changed


def test_models_and_datasets_list():
    proc = edgetrgl("models", "resnet*")
    assert proc.returncode == 0 and "resnet110" in proc.stdout and "vgg" not in proc.stdout
    proc = edgetrgl("datasets")
    assert proc.returncode == 0 and "mnist5k" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet9000"], "unknown model"),
    (["--dataset", "imagenet22k"], "unknown dataset"),
    (["--modules", "99"], "larger than"),
    (["--epochs", "-1"], "--epochs"),
    (["--budget", "two gigs"], "malformed size"),
    (["--budget", "0GB"], "greater than zero"),
    (["--budget=-1GB"], "malformed size"),
    (["--regime", "sideways"], "invalid choice"),
    pytest.param(["--device", "cuda"], "--device cuda was requested but no CUDA GPU is available",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here")),
    (["--lr", "0"], "--lr must be a finite number greater than 0, got 0.0"),
    (["--config", "/nonexistent/run.toml"], "not found"),
    (["--train-fraction", "1.5"], "train-fraction"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    proc = edgetrgl("train", *TINY, "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_malformed_toml_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("model = [unclosed\n")
    proc = edgetrgl("train", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "malformed TOML" in proc.stderr and "Traceback" not in proc.stderr
    bad.write_text('colour = "blue"\n')
    proc = edgetrgl("train", "--config", str(bad), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "unknown config key" in proc.stderr


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = edgetrgl("train", *TINY, "--out", str(blocker / "run"))
    assert proc.returncode == 2 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    assert blocker.read_text() == "not a folder"


def test_images_that_do_not_fit_a_custom_model_are_one_clear_error(synthetic_data):
    from torch import nn

    from edgetrgl import BlockNet, UserError, train
    from tests.conftest import tiny_config

    wrong = BlockNet(stem=nn.Conv2d(1, 8, 3, padding=1), blocks=[nn.Conv2d(8, 8, 3, padding=1)])  # expects 1 channel
    with pytest.raises(UserError, match="do not fit the model"):
        train(tiny_config(modules=1), model=wrong, data=synthetic_data, out=None, quiet=True)  # synthetic has 3
