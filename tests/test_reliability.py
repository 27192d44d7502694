"""Interruptions: SIGKILL at chosen points, signals, corrupt files, full disks. Nothing finished is lost,
and a resumed run ends bit-identical to an uninterrupted one (CPU, same seed)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgetrgl.training.checkpoint import load_checkpoint

TOML = 'model_options = { width = 4 }\ndataset_options = { num_train = 256, num_test = 128 }\n'


def tiny_args(tmp_path: Path, regime="sequential", cache="disk", extra=()):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TOML)
    return ["--dataset", "synthetic", "--config", str(toml), "--modules", "3", "--epochs", "2", "--batch-size", "64",
            "--device", "cpu", "--quiet", "--no-augment", "--regime", regime, "--cache", cache, *extra]


def edgetrgl(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "edgetrgl.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def weights(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def accuracies(run: Path) -> list:
    return [m["test_accuracy"] for m in json.loads((run / "summary.json").read_text())["modules"]]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ after resume"
    assert accuracies(a) == accuracies(b)
    epochs = lambda run: [(r["module"], r["epoch"], r["ce"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["event"] == "epoch"]  # noqa: E731
    assert epochs(a) == epochs(b), "metrics.jsonl differs after resume"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, one per regime, to compare resumed runs against."""
    runs = {}
    root = tmp_path_factory.mktemp("reference")
    for regime in ("sequential", "parallel"):
        out = root / regime
        proc = edgetrgl("train", *tiny_args(root, regime), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        runs[regime] = out
    return runs


# 256 samples / 64 = 4 steps per epoch, 2 epochs per module, 3 modules: 24 sequential steps
KILL_POINTS = [
    ("sequential", "step:3"),               # mid-epoch, before any checkpoint
    ("sequential", "step:6"),               # mid-epoch 2 of module 1
    ("sequential", "step:13"),              # module 2, its inputs from the disk cache
    ("sequential", "cache_write:2"),        # while writing module 1's output cache
    ("sequential", "checkpoint_write:3"),   # half a checkpoint file on disk
    ("sequential", "checkpoint_rename:4"),  # complete temporary file, not yet renamed
    ("parallel", "step:5"),
    ("parallel", "checkpoint_write:1"),
]


@pytest.mark.parametrize("regime,point", KILL_POINTS)
def test_sigkill_then_resume_is_bit_identical(regime, point, reference, tmp_path):
    out = tmp_path / "run"
    crashed = edgetrgl("train", *tiny_args(tmp_path, regime), "--out", str(out), env={"EDGETRGL_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    if (out / "checkpoint.pt").exists():
        load_checkpoint(out)  # the latest checkpoint is never a torn one
    if not (out / "checkpoint.pt").exists():  # killed before the first checkpoint: start again
        again = edgetrgl("train", *tiny_args(tmp_path, regime), "--out", str(out))
        assert again.returncode == 2 and "--resume" in again.stderr  # never clobbered silently
        resumed = edgetrgl("train", *tiny_args(tmp_path, regime), "--out", str(out), "--overwrite")
    else:
        resumed = edgetrgl("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference[regime], out)


def test_corrupt_cache_shard_is_detected_and_rebuilt(reference, tmp_path):
    out = tmp_path / "run"
    crashed = edgetrgl("train", *tiny_args(tmp_path), "--out", str(out), env={"EDGETRGL_CRASH_AT": "step:13"})
    assert crashed.returncode == -signal.SIGKILL
    shard = out / "cache" / "lap1-module1-train" / "view0_shard0.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF  # one flipped byte
    shard.write_bytes(bytes(data))
    resumed = edgetrgl("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "not reused" in resumed.stderr and "rebuilding" in resumed.stderr
    assert_same_run(reference["sequential"], out)


def test_truncated_shard_is_detected(tmp_path):
    from edgetrgl.cache import ActivationCache
    from edgetrgl.cache.activation_cache import CacheCorrupt

    cache = ActivationCache(8, backend="disk", root=tmp_path / "c", tag={"module": 0})
    cache.append(0, torch.randn(8, 4), torch.zeros(8, dtype=torch.long))
    cache.finish()
    assert ActivationCache.open(tmp_path / "c", {"module": 0}).complete
    with pytest.raises(CacheCorrupt, match="not"):
        ActivationCache.open(tmp_path / "c", {"module": 1})  # written by another module
    with open(tmp_path / "c" / "view0_shard0.bin", "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(CacheCorrupt, match="truncated"):
        ActivationCache.open(tmp_path / "c", {"module": 0})


def test_sigterm_checkpoints_and_says_how_to_resume(reference, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(tmp_path, extra=("--epochs", "30"))
    proc = subprocess.Popen([sys.executable, "-m", "edgetrgl.cli.main", "train", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:  # wait until it is training
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and f"--resume {out}" in stderr and "Traceback" not in stderr
    state = load_checkpoint(out)
    assert state["position"]["batch"] > 0 or state["position"]["epoch"] > 0 or state["position"]["module"] > 0


def test_resume_refuses_a_contradicting_config_and_a_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    crashed = edgetrgl("train", *tiny_args(tmp_path), "--out", str(out), env={"EDGETRGL_CRASH_AT": "step:10"})
    assert crashed.returncode == -signal.SIGKILL
    before = (out / "checkpoint.pt").read_bytes()
    proc = edgetrgl("train", "--resume", str(out), "--lr", "0.5")
    assert proc.returncode == 2 and "contradicts the saved run" in proc.stderr and "Traceback" not in proc.stderr
    edited = tmp_path / "edited.toml"  # a config file given with --resume is checked like the flags
    edited.write_text("[optim]\nlr = 0.5\n")
    proc = edgetrgl("train", "--resume", str(out), "--config", str(edited))
    assert proc.returncode == 2 and "--resume: --lr 0.5 contradicts the saved run" in proc.stderr, proc.stderr
    assert (out / "checkpoint.pt").read_bytes() == before
    (out / "checkpoint.pt").write_bytes(before[: len(before) // 2])
    proc = edgetrgl("train", "--resume", str(out))
    assert proc.returncode == 2 and "corrupt" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = edgetrgl("train", "--resume", str(tmp_path / "nothing-here"))
    assert proc.returncode == 2 and "no such run folder" in proc.stderr


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = edgetrgl("train", *tiny_args(tmp_path), "--lr", "1e12", "--out", str(out))
    assert proc.returncode == 2 and "loss became" in proc.stderr and "module 1" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real full disk (skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_while_caching_falls_back_to_host_memory(small_disk, tmp_path):
    """The cache of module 1 (256+128 samples x 4x16x16 fp32 = 393 KiB) plus views won't fit in 1 MiB."""
    from edgetrgl.api import train
    from tests.conftest import tiny_config

    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (900 * 1024))
    cfg = tiny_config(regime="sequential", cache="disk", cache_dir=str(small_disk / "cache"), augment=False,
                      dataset_options={"num_train": 256, "num_test": 128})
    result = train(cfg, out=None, quiet=True)
    assert result.extra["data_mode"].startswith("host cache")
    reference = train(tiny_config(regime="sequential", cache="host", augment=False,
                                  dataset_options={"num_train": 256, "num_test": 128}), out=None, quiet=True)
    assert [m["test_accuracy"] for m in result.modules] == [m["test_accuracy"] for m in reference.modules]


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(small_disk):
    from edgetrgl.training.checkpoint import DiskFull, save_checkpoint

    save_checkpoint(small_disk, {"position": {"epoch": 1}, "blob": torch.zeros(1000)})
    with pytest.raises(DiskFull, match="previous checkpoint is intact"):
        save_checkpoint(small_disk, {"position": {"epoch": 2}, "blob": torch.zeros(2_000_000)})
    assert load_checkpoint(small_disk)["position"] == {"epoch": 1}
    assert not (small_disk / "checkpoint.pt.tmp").exists()


def test_finished_run_cannot_be_resumed_or_overwritten_silently(reference):
    proc = edgetrgl("train", "--resume", str(reference["sequential"]))
    assert proc.returncode == 2 and "already finished" in proc.stderr


def test_a_flipped_bit_anywhere_in_the_checkpoint_is_refused(tmp_path):
    """torch's own format loads most single-bit flips without a word (benchmarks/chaos.py found 87% of them,
    resumed into a run that then differed); the seal refuses every one, and plain torch.load still reads the file."""
    import random

    from edgetrgl.errors import UserError
    from edgetrgl.training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, {"position": {"epoch": 1}, "blob": torch.arange(1000.0)})
    path = tmp_path / "checkpoint.pt"
    raw = path.read_bytes()
    assert torch.load(path, weights_only=True)["position"] == {"epoch": 1}
    rng = random.Random(0)
    for at in rng.sample(range(len(raw)), 64):
        damaged = bytearray(raw)
        damaged[at] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(UserError, match="is corrupt"):
            load_checkpoint(tmp_path)
    path.write_bytes(raw[:-32])  # the seal cut off: a complete zip, but not the file that was written
    with pytest.raises(UserError, match="checksum is missing"):
        load_checkpoint(tmp_path)
    torch.save({"format": "edgetrgl-checkpoint/1", "position": {"epoch": 3}}, path)  # written before the seal
    assert load_checkpoint(tmp_path)["position"] == {"epoch": 3}


def test_sigterm_during_evaluation_checkpoints_and_resumes_bit_identical(reference, tmp_path):
    """EDGETRGL_TERM_AT: the SIGTERM arrives while module 1's test outputs are scored (the cache fill)."""
    out = tmp_path / "run"
    stopped = edgetrgl("train", *tiny_args(tmp_path), "--out", str(out), env={"EDGETRGL_TERM_AT": "evaluate:1"})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "SIGTERM received" in stopped.stderr and "Traceback" not in stopped.stderr
    assert load_checkpoint(out)["position"]["module"] == 1  # module 1 finished, scored and cached first
    resumed = edgetrgl("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference["sequential"], out)


def test_a_disk_with_no_space_at_all_is_one_line(small_disk):
    """A disk full before the checkpoint (the lock file, config.json, metrics.jsonl): one line, not a traceback."""
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as fh:  # as much as fits
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    proc = edgetrgl("train", *tiny_args(small_disk.parent), "--out", str(small_disk / "run"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "no space left on the device" in proc.stderr


# ---- signals from the first line: planning, cache fill, the last evaluation, SIGHUP ----------------
def test_sigterm_during_planning_writes_nothing_and_the_same_command_starts_again(reference, tmp_path):
    out = tmp_path / "run"
    stopped = edgetrgl("train", *tiny_args(tmp_path), "--out", str(out), env={"EDGETRGL_TERM_AT": "plan:1"})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "SIGTERM received while planning: nothing was written" in stopped.stderr
    assert "Traceback" not in stopped.stderr and len(stopped.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())  # the run folder was never prepared
    again = edgetrgl("train", *tiny_args(tmp_path), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert_same_run(reference["sequential"], out)


def test_sigterm_during_the_cache_fill_finishes_the_fill_checkpoints_and_resumes_bit_identical(reference, tmp_path):
    out = tmp_path / "run"
    stopped = edgetrgl("train", *tiny_args(tmp_path), "--out", str(out), env={"EDGETRGL_TERM_AT": "cache_write:2"})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert "Traceback" not in stopped.stderr
    assert load_checkpoint(out)["position"]["module"] == 1  # module 1 finished and its cache sealed first
    resumed = edgetrgl("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference["sequential"], out)


def test_sighup_and_sigint_stop_with_their_own_codes(tmp_path):
    """SIGHUP (a closed terminal) and SIGINT (Ctrl-C) are graceful too, each with 128 + its number."""
    for signum in (signal.SIGHUP, signal.SIGINT):
        out = tmp_path / signum.name
        proc = subprocess.Popen([sys.executable, "-m", "edgetrgl.cli.main", "train", *tiny_args(tmp_path),
                                 "--epochs", "40", "--out", str(out)],
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:  # training has started
            time.sleep(0.2)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 128 + signum, stderr
        assert f"{signum.name} received" in stderr and "Traceback" not in stderr
        assert load_checkpoint(out)["position"]["epoch"] >= 1


def test_a_signal_while_torch_imports_is_honoured_too(tmp_path):
    """The CLI installs its stop handlers before torch loads (the package imports it only on first use): a
    Ctrl-C in the seconds torch takes to import stops with one line and 130, not a KeyboardInterrupt traceback."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "edgetrgl.cli.main", "train", *tiny_args(tmp_path), "--out", str(out)],
                            stderr=subprocess.PIPE, text=True)
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # until the SIGHUP handler (edgetrgl's) is set
        if int(status.read_text().split("SigCgt:")[1].split()[0], 16) >> (signal.SIGHUP - 1) & 1:
            break
        time.sleep(0.005)
    torch_loaded = "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert not torch_loaded  # the handlers came first
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "SIGINT received while" in stderr and "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_the_program_keeps_its_stop_handlers_until_it_has_exited(monkeypatch, capsys):
    """Run as the program (argv None) the CLI leaves its stop handlers in place when main returns: a Ctrl-C
    while the interpreter shuts down (torch's exit hooks take a second or two) finds the run over and changes
    nothing, where Python's own handler printed a KeyboardInterrupt traceback from an exit hook. In-process
    callers (argv given) get their handlers back."""
    from edgetrgl import stop
    from edgetrgl.cli.main import main

    before = {s: signal.getsignal(s) for s in stop.SIGNALS}
    monkeypatch.setattr(sys, "argv", ["edgetrgl", "train", "--help"])
    try:
        with pytest.raises(SystemExit):
            main()
        assert all(signal.getsignal(s) is not before[s] for s in stop.SIGNALS)
    finally:
        stop.restore({s: before[s] for s in stop.SIGNALS})
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_python_api_leaves_the_callers_signal_handlers_as_they_were(synthetic_data):
    from edgetrgl.api import train
    from tests.conftest import tiny_config

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    train(tiny_config(regime="e2e", epochs=1), data=synthetic_data, out=None, quiet=True)
    assert {s: signal.getsignal(s) for s in before} == before
