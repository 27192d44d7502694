"""The activation cache: storage round trips, and exact parity with recomputing the prefix."""

import pytest
import torch

from edgetrgl.cache import ActivationCache, Prefetcher
from edgetrgl.api import train
from tests.conftest import tiny_config


@pytest.mark.parametrize("backend", ["host", "disk"])
def test_round_trip_fp32_is_exact(backend, tmp_path):
    feats, labels = torch.randn(10, 3, 4, 4), torch.arange(10)
    cache = ActivationCache(10, backend=backend, root=tmp_path / "c", shard_size=4)
    for start in range(0, 10, 3):  # batches that straddle shard edges
        cache.append(0, feats[start:start + 3], labels[start:start + 3])
    assert cache.complete and cache.num_shards == 3
    order = torch.randperm(10)
    got = torch.cat([x for x, _ in cache.batches(4, order=order)])
    assert torch.equal(got, feats[order])
    assert torch.equal(torch.cat([y for _, y in cache.batches(4, order=order)]), labels[order])
    if backend == "disk":
        assert len(list((tmp_path / "c").glob("*.bin"))) == 3
    cache.close()
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_storage_rounds_like_a_cast(dtype, torch_dtype, tmp_path):
    feats = torch.randn(6, 5)
    cache = ActivationCache(6, backend="disk", storage_dtype=dtype, root=tmp_path / "c")
    cache.append(0, feats, torch.zeros(6, dtype=torch.long))
    x, _ = next(cache.batches(6))
    assert x.dtype == torch.float32
    assert torch.equal(x, feats.to(torch_dtype).float())
    assert cache.nbytes == 6 * 5 * 2


def test_prefetcher_yields_everything_in_order_and_surfaces_errors():
    batches = [(torch.full((2,), float(i)), torch.tensor([i])) for i in range(7)]
    assert [int(y) for _, y in Prefetcher(batches, "cpu")] == list(range(7))

    def broken():
        yield torch.zeros(1), torch.zeros(1)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        list(Prefetcher(broken(), "cpu"))


def _weights(cache, offload="host", tmp_path=None, **extra):
    cfg = tiny_config(regime="sequential", augment=False, epochs=2, cache=cache, offload=offload,
                      cache_dir=str(tmp_path / "cache") if tmp_path else None, **extra)
    result = train(cfg, out=None, quiet=True)
    return result, {k: v.clone() for k, v in result.net.state_dict().items()}


def test_cached_run_equals_recomputing_run_exactly(tmp_path):
    """With augmentation off, a cached run sees bit-identical inputs, so every gradient and weight is equal."""
    recomputed, w_none = _weights("none")
    for mode in ("host", "disk"):
        cached, w_cache = _weights(mode, tmp_path=tmp_path)
        assert cached.extra["cache"] == mode
        for name in w_none:
            assert torch.equal(w_none[name], w_cache[name]), (mode, name)
        assert [m["test_accuracy"] for m in cached.modules] == [m["test_accuracy"] for m in recomputed.modules]


def test_disk_offload_gives_the_same_weights(tmp_path):
    _, w_host = _weights("host")
    _, w_disk = _weights("disk", offload="disk", tmp_path=tmp_path)
    for name in w_host:
        assert torch.equal(w_host[name], w_disk[name]), name
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.bin"))


def test_augmented_views_are_cached_per_view(synthetic_data):
    cfg = tiny_config(regime="sequential", epochs=2, cache="host", cache_views=2, modules=2)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert "2 augmented view(s)" in result.extra["data_mode"]
    # module 1's outputs: 2 views of the training set plus the test set
    per_sample = result.modules[0]["cache_bytes"] / (2 * 512 + 256)
    assert per_sample == int(per_sample) and per_sample > 0


def test_offloader_moves_frozen_modules_to_disk_and_back(tmp_path):
    from edgetrgl.training.offload import Offloader
    from tests.test_modular import tiny_net

    net = tiny_net(3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    offloader = Offloader(net, torch.device("cpu"), mode="disk", folder=tmp_path)
    offloader.release(0)
    assert all(p.is_meta for p in net.stages[0].parameters())  # no host memory held
    assert (tmp_path / "offload" / "module1.pt").exists()
    assert all(torch.equal(before[f"stages.0.{k}"], v) for k, v in offloader.stage_state(0).items())
    offloader.bring(0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    offloader.release(1)
    offloader.restore_all()
    assert not any(p.is_meta for p in net.parameters()) and not (tmp_path / "offload").exists()


def test_keep_cache_leaves_the_disk_cache_with_its_manifest(tmp_path):
    cfg = tiny_config(regime="sequential", epochs=1, cache="disk", keep_cache=True, augment=False,
                      cache_dir=str(tmp_path / "cache"), dataset_options={"num_train": 128, "num_test": 64})
    train(cfg, out=None, quiet=True)
    manifests = sorted(p.parent.name for p in (tmp_path / "cache").rglob("manifest.json"))
    assert manifests == ["lap1-module1-test", "lap1-module1-train", "lap1-module2-test", "lap1-module2-train"]


def test_a_disk_filling_up_mid_shard_raises_enospc_and_nothing_is_sealed(tmp_path, monkeypatch):
    """The shards are written with pwrite: a short write, then ENOSPC, surfaces as the OSError the
    sequential regime falls back on (never a SIGBUS in a memory map), and no manifest vouches for it."""
    import errno
    import os

    from edgetrgl.cache.activation_cache import MANIFEST, CacheCorrupt

    real_pwrite, calls = os.pwrite, []

    def filling_up(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 2:
            return real_pwrite(fd, data[: len(data) // 2], offset)  # half of it fits
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", filling_up)
    cache = ActivationCache(8, backend="disk", root=tmp_path / "c", shard_size=8)
    cache.append(0, torch.randn(4, 3), torch.arange(4))
    with pytest.raises(OSError) as raised:
        cache.append(0, torch.randn(4, 3), torch.arange(4))
    assert raised.value.errno == errno.ENOSPC and calls == [48, 48, 24]
    cache.finish()  # incomplete: not sealed
    assert not (tmp_path / "c" / MANIFEST).exists()
    cache.close(keep=True)
    with pytest.raises(CacheCorrupt):
        ActivationCache.open(tmp_path / "c")


def test_a_cache_sealed_in_the_old_format_is_rebuilt_not_trusted(tmp_path):
    import json

    from edgetrgl.cache.activation_cache import MANIFEST, CacheCorrupt

    cache = ActivationCache(4, backend="disk", root=tmp_path / "c", shard_size=4)
    cache.append(0, torch.randn(4, 3), torch.arange(4))
    cache.finish()
    assert ActivationCache.open(tmp_path / "c").complete
    manifest = json.loads((tmp_path / "c" / MANIFEST).read_text())
    (tmp_path / "c" / MANIFEST).write_text(json.dumps({**manifest, "format": "edgetrgl-cache/1"}))
    with pytest.raises(CacheCorrupt, match="format"):
        ActivationCache.open(tmp_path / "c")
