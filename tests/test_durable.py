"""Durable writes: every rename and new folder is followed by an fsync of its folder, and a failed
write leaves the old file. (What a power cut does to a whole run: docs/reliability.md, crash states.)"""

from __future__ import annotations

import os
import stat

import pytest
import torch

from edgetrgl._durable import fsync_dir, make_dirs, write_atomically


@pytest.fixture
def fsynced(monkeypatch):
    """Every fsync, in order: ("dir", path) or ("file", path); and the renames among them."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def spy_fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", path))
        return real_fsync(fd)

    def spy_replace(src, dst):
        real_replace(src, dst)
        calls.append(("rename", str(dst)))

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    return calls


def test_write_atomically_fsyncs_the_data_then_renames_then_fsyncs_the_folder(tmp_path, fsynced):
    target = tmp_path / "summary.json"
    write_atomically(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert fsynced == [("file", str(tmp_path / "summary.json.tmp")), ("rename", str(target)), ("dir", str(tmp_path))]
    assert not (tmp_path / "summary.json.tmp").exists()


def test_write_atomically_keeps_the_old_file_when_the_writer_raises(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    def half_then_fail(fh):
        fh.write(b"new, but only half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomically(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left behind


def test_write_atomically_takes_a_writer(tmp_path):
    target = write_atomically(tmp_path / "t.pt", lambda fh: torch.save(torch.arange(3), fh))
    assert torch.equal(torch.load(target, weights_only=True), torch.arange(3))


def test_make_dirs_fsyncs_the_parent_of_every_folder_it_creates(tmp_path, fsynced):
    make_dirs(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert fsynced == [("dir", str(tmp_path)), ("dir", str(tmp_path / "a")), ("dir", str(tmp_path / "a" / "b"))]
    fsynced.clear()
    make_dirs(tmp_path / "a" / "b")  # nothing new: nothing to flush
    assert fsynced == []


def test_make_dirs_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError):
        make_dirs(tmp_path / "f" / "sub")
    assert (tmp_path / "f").read_text() == "x"


def test_fsync_dir_refuses_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        fsync_dir(tmp_path / "f")


def test_checkpoint_summary_and_weights_fsync_their_folder_after_the_rename(tmp_path, fsynced):
    from edgetrgl.training.checkpoint import save_checkpoint
    from edgetrgl.training.run_dir import save_weights, write_json

    save_checkpoint(tmp_path, {"x": 1})
    write_json(tmp_path / "summary.json", {"a": 1})
    save_weights(tmp_path / "model.pt", torch.nn.Linear(2, 2), {})
    renames = [i for i, call in enumerate(fsynced) if call[0] == "rename"]
    assert len(renames) == 3
    for i in renames:
        assert fsynced[i - 1][0] == "file"  # the data before the rename
        assert fsynced[i + 1] == ("dir", str(tmp_path))  # the folder after it


def test_metrics_jsonl_is_fsynced_by_sync_and_on_close(tmp_path, fsynced):
    from edgetrgl.metrics.jsonl import JsonLines

    sink = JsonLines(tmp_path / "metrics.jsonl")
    sink.write({"event": "epoch"}, 1)
    sink.sync()
    assert fsynced == [("file", str(tmp_path / "metrics.jsonl"))]
    sink.write({"event": "module"}, 2)
    sink.close()  # and on close
    assert fsynced == [("file", str(tmp_path / "metrics.jsonl"))] * 2


def test_a_sealed_disk_cache_flushes_its_shards_before_its_manifest(tmp_path, fsynced):
    from edgetrgl.cache import ActivationCache

    cache = ActivationCache(4, backend="disk", root=tmp_path / "run" / "cache" / "m1", shard_size=2)
    cache.append(0, torch.ones(4, 3), torch.arange(4))
    cache.finish()
    root = str(tmp_path / "run" / "cache" / "m1")
    shard_syncs = [i for i, c in enumerate(fsynced) if c == ("file", f"{root}/view0_shard0.bin")]
    manifest = fsynced.index(("rename", f"{root}/manifest.json"))
    assert shard_syncs and shard_syncs[0] < manifest
    assert fsynced[manifest + 1] == ("dir", root)
    assert ("dir", str(tmp_path / "run")) in fsynced  # the new folders' entries: make_dirs
    cache.close()

