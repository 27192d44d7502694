"""The metrics logger (edgetrgl/metrics/): one interface over sinks. metrics.jsonl keeps its format,
every record gets a global step, TensorBoard's own reader loads the per-module scalars, a resume
draws no point twice, only the main process writes, and a missing tensorboard is one line."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetrgl.cli.main import main
from edgetrgl.config import TrainConfig
from edgetrgl.errors import UserError
from edgetrgl.metrics import MetricsWriter, make_logger
from edgetrgl.metrics.tensorboard import TensorBoard
from edgetrgl.training.run_dir import truncate_metrics

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

TOML = 'model_options = { width = 4 }\ndataset_options = { num_train = 256, num_test = 128 }\n'
TINY = ["--dataset", "synthetic", "--modules", "2", "--epochs", "2", "--batch-size", "64", "--device", "cpu",
        "--quiet", "--no-augment", "--cache", "host"]


def board(folder: Path):
    """TensorBoard's own reader over ``folder`` (every event file in it, purges applied)."""
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def points(acc, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def epoch(module: int, n: int, ce: float) -> dict:
    return {"event": "epoch", "lap": 0, "module": module, "epoch": n, "ce": ce, "transport": 2 * ce,
            "train_accuracy": 0.5, "tau": 10.0, "lr": 0.05, "time_s": 1.5}


def test_jsonl_is_todays_format_byte_for_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1700000000.12345)
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, quiet=True)
    writer.log({"event": "epoch", "module": 1, "ce": float("nan"), "phases_s": {"steps": 1.25}, "blocks": (0, 3)})
    writer.warn("disk full")
    assert writer.tell() == path.stat().st_size
    writer.close()
    assert path.read_text() == (
        '{"time": 1700000000.123, "event": "epoch", "module": 1, "ce": "nan", "phases_s": {"steps": 1.25}, "blocks": [0, 3]}\n'
        '{"time": 1700000000.123, "event": "warning", "message": "disk full"}\n')


def test_every_record_gets_the_next_step_and_a_reopened_file_goes_on(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, quiet=True)
    for n in range(3):
        writer.log({"event": "x", "n": n})
    assert writer.step == 3
    writer.close()
    again = MetricsWriter(path, quiet=True)  # a resume: the step is the line number in metrics.jsonl
    again.log({"event": "x", "n": 3})
    assert again.step == 4 and len(path.read_text().splitlines()) == 4
    again.close()


def test_tensorboard_reader_loads_the_per_module_scalars(tmp_path):
    writer = MetricsWriter(tmp_path / "metrics.jsonl", quiet=True, sinks=[lambda step: TensorBoard(tmp_path / "tb", first_step=step)])
    writer.log({"event": "start", "device": "cpu"})
    writer.log(epoch(1, 1, 2.0))
    writer.log({"event": "module", "lap": 0, "module": 1, "blocks": [0, 3], "test_accuracy": 0.75, "time_s": 3.0,
                "epochs": 1, "peak_bytes": 3 * 2**20, "peak_rss_bytes": 512 * 2**20, "rss_bytes": 500 * 2**20,
                "phases_s": {"steps": 2.5, "data": 0.5}})
    writer.close()
    acc = board(tmp_path / "tb")
    assert points(acc, "module_1/ce") == [(2, 2.0)] and points(acc, "module_1/transport") == [(2, 4.0)]
    assert points(acc, "module_1/train_accuracy") == [(2, 0.5)] and points(acc, "module_1/test_accuracy") == [(3, 0.75)]
    assert points(acc, "module_1/tensor_peak_MiB") == [(3, 3.0)] and points(acc, "module_1/peak_rss_MiB") == [(3, 512.0)]
    assert points(acc, "module_1/phases_s/steps") == [(3, 2.5)] and points(acc, "module_1/module_s") == [(3, 3.0)]
    assert points(acc, "module_1/lr")[0][1] == pytest.approx(0.05)
    assert not any(tag.endswith(("/module", "/epoch", "/lap", "/epochs")) for tag in acc.Tags()["scalars"])


def test_a_resume_purges_the_points_past_its_checkpoint(tmp_path):
    path, tb = tmp_path / "metrics.jsonl", tmp_path / "tb"
    first = MetricsWriter(path, quiet=True, sinks=[lambda step: TensorBoard(tb, first_step=step)])
    first.log(epoch(1, 1, 2.0))
    first.log(epoch(1, 2, 1.5))
    checkpoint = first.tell()
    first.log(epoch(1, 3, 9.0))  # past the checkpoint: the run is killed before the next one
    first.close()
    truncate_metrics(path, checkpoint)
    again = MetricsWriter(path, quiet=True, sinks=[lambda step: TensorBoard(tb, first_step=step)])
    again.log({"event": "resume"})
    again.log(epoch(1, 3, 1.0))
    again.close()
    assert points(board(tb), "module_1/ce") == [(1, 2.0), (2, 1.5), (4, 1.0)]  # not (3, 9.0)


def test_only_the_main_process_writes_and_console_can_be_left_out(tmp_path, capsys):
    cfg = TrainConfig(loggers=["jsonl", "console", "tensorboard"])
    other_rank = make_logger(cfg, tmp_path, main=False)
    other_rank.log(epoch(1, 1, 2.0), echo="from rank 1")
    other_rank.close()
    assert list(tmp_path.iterdir()) == [] and "from rank 1" not in capsys.readouterr().err
    silent = make_logger(TrainConfig(loggers=["jsonl"]), tmp_path)
    silent.log(epoch(1, 1, 2.0), echo="not printed")
    silent.close()
    assert "not printed" not in capsys.readouterr().err and (tmp_path / "metrics.jsonl").exists()
    assert not (tmp_path / "tb").exists()


def test_without_tensorboard_it_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    code = main(["train", *TINY, "--out", str(tmp_path / "run"), "--log", "tensorboard"])
    err = capsys.readouterr().err
    assert code == 2 and err == ("edgetrgl: error: --log tensorboard needs the tensorboard package: "
                                 "pip install 'edgetrgl[tensorboard]'\n")
    assert not (tmp_path / "run").exists()  # before the run folder was made
    with pytest.raises(UserError, match="pip install 'edgetrgl\\[tensorboard\\]'"):
        make_logger(TrainConfig(loggers=["jsonl", "tensorboard"]), tmp_path)


def test_train_log_tensorboard_killed_and_resumed_draws_each_record_once(tmp_path):
    """End to end: a run killed while writing its 4th checkpoint (the epoch record before it is
    already drawn) and resumed shows each epoch once, at its line in metrics.jsonl, with the values
    metrics.jsonl holds."""
    (tmp_path / "tiny.toml").write_text(TOML)
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "edgetrgl.cli.main", "train", *TINY, "--config", str(tmp_path / "tiny.toml"),
            "--out", str(out), "--log", "tensorboard"]
    killed = subprocess.run(argv, env={**os.environ, "EDGETRGL_CRASH_AT": "checkpoint_write:4"}, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    before = board(out / "tb")
    assert len(points(before, "module_2/ce")) == 1  # drawn, then killed before its checkpoint
    resumed = subprocess.run([sys.executable, "-m", "edgetrgl.cli.main", "train", "--resume", str(out), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    acc = board(out / "tb")
    for module in (1, 2):
        expected = [(line, r["ce"]) for line, r in enumerate(records, 1) if r["event"] == "epoch" and r["module"] == module]
        drawn = points(acc, f"module_{module}/ce")
        assert [step for step, _ in drawn] == [line for line, _ in expected]  # no step twice, none orphaned
        assert [value for _, value in drawn] == pytest.approx([ce for _, ce in expected], rel=1e-6)
    assert [s for s, _ in points(acc, "module_2/test_accuracy")] == [
        line for line, r in enumerate(records, 1) if r["event"] == "module" and r["module"] == 2]


def test_overwrite_clears_tb_and_a_resume_may_add_a_sink(tmp_path):
    from edgetrgl.training.run_dir import agreed_changes, prepare_run_dir

    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.host.1.0").write_bytes(b"old")
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    prepare_run_dir(tmp_path, overwrite=True)
    assert not (tmp_path / "tb").exists()  # a replaced run's charts go with it
    loggers = ["jsonl", "console", "tensorboard"]
    assert agreed_changes(TrainConfig(), {"loggers": loggers}, "--resume") == {"loggers": loggers}
    with pytest.raises(UserError, match="contradicts the saved run"):
        agreed_changes(TrainConfig(), {"lr": 0.5}, "--resume")


class ToySink:
    """A sink a user registers: keeps what it gets, and leaves a file in its own folder of the run."""

    def __init__(self, folder, first_step):
        self.folder, self.first_step, self.records = folder, first_step, []
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "opened").write_text(str(first_step))
        TOY_SINKS.append(self)

    def write(self, record, step, echo=None):
        self.records.append((step, json.loads(json.dumps(record))))  # as written: the loops reuse their dicts

    def close(self):
        self.closed = True


TOY_SINKS: list[ToySink] = []


def test_a_registered_sink_gets_the_records_and_overwrite_clears_its_folder(tmp_path):
    """One register() call: --log names it, the run feeds it every record metrics.jsonl holds, and
    --overwrite of the run deletes the folder it owns, by the same code that deletes tb/."""
    from edgetrgl.api import train
    from edgetrgl.data import load_dataset
    from edgetrgl.metrics.sinks import SinkKind, register, sink_names, unregister
    from tests.conftest import tiny_config

    few = load_dataset("synthetic", num_train=128, num_test=64, seed=0)
    out = tmp_path / "run"
    TOY_SINKS.clear()
    register(SinkKind("toy", "a sink registered by a test", owns=("toy",),
                      build=lambda folder, first_step: ToySink(folder / "toy", first_step)))
    try:
        train(tiny_config(loggers=["jsonl", "toy"], modules=2, epochs=1), data=few, out=out, quiet=True)
        (sink,) = TOY_SINKS
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert sink.first_step == 1 and sink.closed
        assert [step for step, _ in sink.records] == list(range(1, len(lines) + 1))
        assert [record for _, record in sink.records] == lines
        assert (out / "toy" / "opened").exists()
        train(tiny_config(loggers=["jsonl"], modules=2, epochs=1), data=few, out=out, overwrite=True, quiet=True)
        assert not (out / "toy").exists() and len(TOY_SINKS) == 1  # cleared with the run it belonged to
    finally:
        unregister("toy")
    assert "toy" not in sink_names()
    with pytest.raises(UserError, match="--log must be one of jsonl, console, tensorboard; got 'toy'"):
        train(tiny_config(loggers=["jsonl", "toy"]), data=few, out=None, quiet=True)
