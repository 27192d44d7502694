"""One writer per run folder, readers that never see half a file, and ``--auto-resume``."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgetrgl.errors import UserError
from edgetrgl.api import run_state
from edgetrgl.training.checkpoint import load_checkpoint
from edgetrgl.training.run_lock import RunDirLocked, hold_run_dir

TOML = 'model_options = { width = 4 }\ndataset_options = { num_train = 256, num_test = 128 }\n'
CLI = [sys.executable, "-m", "edgetrgl.cli.main"]


def tiny_args(tmp_path: Path, *extra, quiet=True):
    """3 modules x 2 epochs x 4 steps of 64 samples: 24 steps, a checkpoint after every epoch."""
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    return ["--dataset", "synthetic", "--config", str(toml), "--modules", "3", "--epochs", "2", "--batch-size", "64",
            "--device", "cpu", "--no-augment", "--cache", "disk", *(["--quiet"] if quiet else []), *extra]


def edgetrgl(*args, env=None, timeout=300):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def snapshot(run: Path) -> dict:
    """Every file's bytes and modification time: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(run)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run.rglob("*")) if p.is_file()}


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def wait_for(condition, seconds: float) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_second_writer_is_refused_while_the_first_runs_and_accepted_after_sigkill(tmp_path):
    out, err = tmp_path / "run", tmp_path / "first.stderr"
    with err.open("w") as fh:  # the first run stalls at its 6th step, after the checkpoint of epoch 1
        first = subprocess.Popen([*CLI, "train", *tiny_args(tmp_path), "--out", str(out)], stdout=subprocess.DEVNULL,
                                 stderr=fh, env={**os.environ, "EDGETRGL_STALL_AT": "step:6"})
    try:
        wait_for(lambda: "stalled at step:6" in err.read_text() or first.poll() is not None, 120)
        assert first.poll() is None, err.read_text()
        before = snapshot(out)
        for args in (["--resume", str(out)], [*tiny_args(tmp_path), "--out", str(out), "--overwrite"],
                     [*tiny_args(tmp_path), "--out", str(out)], [*tiny_args(tmp_path), "--out", str(out), "--auto-resume"]):
            second = edgetrgl("train", *args, timeout=120)
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, second.stderr
            assert f"is in use by process {first.pid} (" in lines[0] and "edgetrgl.cli.main train" in lines[0], lines[0]
            assert snapshot(out) == before, f"{args} touched the run folder"
    finally:
        first.kill()
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL
    resumed = edgetrgl("train", "--resume", str(out), "--quiet")  # the lock died with the process
    assert resumed.returncode == 0, resumed.stderr
    resume = [r for r in records(out) if r["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["position"]["module"] == 0 and resume[0]["position"]["epoch"] == 1


def test_readers_see_only_complete_checkpoints_while_a_run_writes(tmp_path):
    out = tmp_path / "run"
    writer = subprocess.Popen([*CLI, "train", *tiny_args(tmp_path, "--epochs", "3"), "--out", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen, deadline = [], time.time() + 240
    while writer.poll() is None and time.time() < deadline:
        if (out / "checkpoint.pt").exists():
            position = load_checkpoint(out)["position"]  # raises on a torn file; takes no lock
            seen.append(tuple(position[k] for k in ("lap", "module", "epoch", "batch")))
        time.sleep(0.05)
    _, stderr = writer.communicate(timeout=60)
    assert writer.returncode == 0, stderr
    assert len(set(seen)) >= 3, "the reader should have caught several checkpoints"
    assert seen == sorted(seen), "a reader went back to an older checkpoint"


def test_auto_resume_starts_resumes_and_reports_and_each_record_is_written_once(tmp_path):
    out = tmp_path / "run"
    command = ["train", *tiny_args(tmp_path), "--out", str(out), "--auto-resume"]
    # new: starts; killed mid-epoch, then (resumed) between a checkpoint's write and its rename
    for crash in ("step:6", "checkpoint_rename:2"):
        proc = edgetrgl(*command, env={"EDGETRGL_CRASH_AT": crash})
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert run_state(out) == "unfinished"
    proc = edgetrgl(*command)
    assert proc.returncode == 0, proc.stderr
    assert run_state(out) == "finished"
    events = [r["event"] for r in records(out)]
    assert events.count("start") == 1 and events.count("resume") == 2
    keys = [(r["event"], r["lap"], r["module"], r.get("epoch")) for r in records(out) if r["event"] in ("epoch", "module")]
    assert len(keys) == len(set(keys)), "a record was written twice"
    assert events.count("epoch") == 3 * 2 and events.count("module") == 3

    # finished: the same command prints the results, exits 0 and touches nothing (the lock file included)
    before = snapshot(out)
    proc = edgetrgl("train", *tiny_args(tmp_path, quiet=False), "--out", str(out), "--auto-resume")
    assert proc.returncode == 0, proc.stderr
    assert "already finished" in proc.stderr and "test acc %" in proc.stderr
    proc = edgetrgl(*command, "--lr", "0.5")
    assert proc.returncode == 2 and "--auto-resume: --lr 0.5 contradicts the saved run" in proc.stderr
    # the same command line with its config file edited: refused too, not silently the saved settings
    (tmp_path / "tiny.toml").write_text(TOML + "\n[optim]\nlr = 0.5\n")
    proc = edgetrgl(*command)
    assert proc.returncode == 2 and "--auto-resume: --lr 0.5 contradicts the saved run" in proc.stderr, proc.stderr
    assert snapshot(out) == before


def test_auto_resume_in_python_restarts_a_run_killed_before_its_first_checkpoint(tmp_path, synthetic_data):
    import edgetrgl
    from tests.conftest import tiny_config

    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")  # what a run killed before its first checkpoint leaves
    (out / "metrics.jsonl").write_text('{"event": "start"}\n')
    (out / "notes.txt").write_text("mine")
    cfg = tiny_config(modules=2, epochs=1, out=str(out))
    assert run_state(out) == "no checkpoint"
    trained = edgetrgl.train(cfg, data=synthetic_data, quiet=True, auto_resume=True)
    assert [r["event"] for r in records(out)].count("start") == 1 and (out / "notes.txt").read_text() == "mine"
    before = snapshot(out)
    again = edgetrgl.train(cfg, data=synthetic_data, quiet=True, auto_resume=True)
    assert snapshot(out) == before
    assert [m["test_accuracy"] for m in again.modules] == [m["test_accuracy"] for m in trained.modules]
    with pytest.raises(UserError, match="--auto-resume: --lr 0.5 contradicts"):
        edgetrgl.train(tiny_config(modules=2, epochs=1, out=str(out), lr=0.5), data=synthetic_data, quiet=True,
                       auto_resume=True)
    with pytest.raises(UserError, match="contradict"):
        edgetrgl.train(cfg, data=synthetic_data, quiet=True, auto_resume=True, overwrite=True)


def test_run_state_refuses_a_folder_it_cannot_read(tmp_path):
    assert run_state(tmp_path / "missing") == "new"
    assert run_state(tmp_path) == "new"
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="holds model.pt but neither checkpoint.pt nor summary.json"):
        run_state(tmp_path)


def test_lock_is_reentrant_in_its_thread_and_refuses_other_threads(tmp_path):
    refused = []

    def other_thread():
        try:
            with hold_run_dir(tmp_path):
                pass
        except RunDirLocked as exc:
            refused.append(str(exc))

    with hold_run_dir(tmp_path):
        with hold_run_dir(tmp_path):  # auto-resume holds the folder, then calls train, which takes it again
            pass
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=30)
        assert len(refused) == 1 and f"process {os.getpid()} (" in refused[0]
    with hold_run_dir(tmp_path):  # released: free again
        pass
    assert (tmp_path / ".lock").read_text() == ""  # a clean release leaves no holder named
