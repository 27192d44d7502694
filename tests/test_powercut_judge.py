"""The judging half of ``benchmarks/aarch64/powercut`` (the boots need root and QEMU: not run here):
the bitwise weight comparison, the verdict on the checkpoint files a cut leaves, and the data disk
staying uncached on the host so a cut loses what the guest had not flushed."""

from __future__ import annotations

import importlib.util
import re
from argparse import Namespace
from pathlib import Path

import torch

from edgetrgl.training.checkpoint import save_checkpoint

HERE = Path(__file__).resolve().parents[1] / "benchmarks" / "aarch64" / "powercut"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"powercut_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _model(path: Path, weight: torch.Tensor) -> Path:
    torch.save({"format": "x", "meta": {}, "state_dict": {"w": weight, "b": torch.zeros(2)}}, path)
    return path


def test_weights_differing_by_one_ulp_are_not_equal(tmp_path):
    compare = _load("compare")
    w = torch.randn(3, 4)
    a, same = _model(tmp_path / "a.pt", w), _model(tmp_path / "same.pt", w.clone())
    nudged = w.clone()
    nudged[1, 2] = torch.nextafter(nudged[1, 2], torch.tensor(float("inf")))
    b = _model(tmp_path / "b.pt", nudged)
    assert compare.compare_weights(a, same) == {"tensors": 2, "elements": 14, "differ": [], "bitwise_equal": True}
    assert compare.compare_weights(a, b)["differ"] == ["w"]


def test_a_torn_checkpoint_is_refused_and_the_complete_one_loads(tmp_path):
    compare = _load("compare")
    save_checkpoint(tmp_path, {"position": {"module": 1, "epoch": 2}, "w": torch.randn(64, 64)})
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt.tmp").write_bytes(data[: len(data) // 2])  # what a cut mid-write can leave
    good = compare.checkpoint_verdict(tmp_path / "checkpoint.pt")
    torn = compare.checkpoint_verdict(tmp_path / "checkpoint.pt.tmp")
    assert good["loads"] and good["position"] == {"module": 1, "epoch": 2}
    assert not torn["loads"] and "corrupt" in torn["refused"] and torn["bytes"] == len(data) // 2


def test_only_the_data_disk_bypasses_the_host_cache_and_the_cut_line_is_found(tmp_path):
    boot = _load("boot")
    args = Namespace(kernel="k", initrd="i", root="r.qcow2", torch="t.img", data="d.img", share=str(tmp_path))
    drives = [a for a in boot.qemu_argv(args, "c.log") if a.startswith("file=")]
    assert [d.split(",")[0] for d in drives] == ["file=r.qcow2", "file=t.img", "file=d.img"]  # vda, vdb, vdc
    assert "cache=none" in drives[2].split(",") and "cache=none" not in drives[0]
    log = tmp_path / "train.log"
    log.write_text("module 1/2 (lap 1): test accuracy 29.70%\nedgetrgl fault: stalled at checkpoint_write:3\n")
    pattern = re.compile("stalled at checkpoint_write:3")
    assert boot.matching_line(str(log), pattern) == "edgetrgl fault: stalled at checkpoint_write:3"
    assert boot.matching_line(str(tmp_path / "absent.log"), pattern) is None
