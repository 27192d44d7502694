"""edgetrgl/cache/device_feed.py on the CPU: the streamed feed serves exactly the plain feed's batches, and a
sequential run fed by it trains exactly the same weights. (Its pinned, side-stream CUDA path: tests/test_gpu.py.)"""

import pytest
import torch

from edgetrgl.cache import ActivationCache, device_feed
from edgetrgl.cache.device_feed import StreamFeed, device_batches_ahead, feed
from edgetrgl.cache.prefetch import likely_in_page_cache
from edgetrgl.api import train
from tests.conftest import tiny_config


def _cache(backend: str, dtype: str, tmp_path, n: int = 37) -> tuple[ActivationCache, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    features, labels = torch.randn(n, 3, 5, 5), torch.randint(0, 10, (n,))
    cache = ActivationCache(n, backend=backend, storage_dtype=dtype, root=tmp_path / "c" if backend == "disk" else None,
                            shard_size=16)
    for start in range(0, n, 8):
        cache.append(0, features[start:start + 8], labels[start:start + 8])
    cache.finish()
    return cache, features, labels


@pytest.mark.parametrize("backend,dtype", [("host", "fp32"), ("host", "fp16"), ("disk", "bf16")])
def test_streamed_batches_equal_the_plain_ones(monkeypatch, tmp_path, backend, dtype):
    cache, _, labels = _cache(backend, dtype, tmp_path)
    order = torch.randperm(37, generator=torch.Generator().manual_seed(3))
    served = {}
    for mode in ("plain", "stream"):
        monkeypatch.setattr(device_feed, "FEED", mode)
        served[mode] = list(feed(cache, 8, "cpu", order=order))
    assert len(served["stream"]) == len(served["plain"]) == 5
    for (xs, ys), (xp, yp) in zip(served["stream"], served["plain"]):
        assert xs.dtype == xp.dtype == torch.float32  # converted after the move, as on the GPU
        assert torch.equal(xs, xp) and torch.equal(ys, yp)
    assert torch.equal(torch.cat([y for _, y in served["stream"]]), labels[order])
    cache.close()


def test_stream_feed_stays_one_batch_ahead_and_stops_its_source():
    pulled, closed = [], []

    def source():
        try:
            for i in range(6):
                pulled.append(i)
                yield torch.full((2,), float(i), dtype=torch.float16), torch.tensor([i, i])
        finally:
            closed.append(True)

    it = iter(StreamFeed(source(), "cpu"))
    x, y = next(it)
    assert x.dtype == torch.float32 and int(y[0]) == 0
    assert pulled == [0, 1]  # batch 1 was issued before batch 0 was handed over
    next(it)
    assert pulled == [0, 1, 2]
    it.close()  # the consumer stops early (an interrupted epoch)
    assert closed == [True]


def test_cached_inputs_on_a_gpu_are_one_batch_ahead():
    assert device_batches_ahead("cuda", "host") == device_batches_ahead("cuda", "disk") == 1
    assert device_batches_ahead("cpu", "host") == 0 and device_batches_ahead("cpu", "disk") == 3


@pytest.mark.parametrize("available, depth", [(10**12, 0), (10, 2)])
def test_a_disk_cache_in_the_page_cache_is_read_inline_on_the_cpu(tmp_path, available, depth):
    """A just-written disk cache that fits well within the RAM available is still in the page cache:
    on the CPU it is served inline (a thread only takes cycles from the step); one that does not may
    hit the disk, so a thread reads ahead. Either way the batches are the same."""
    cache, features, _ = _cache("disk", "fp32", tmp_path)
    served = feed(cache, 8, "cpu", in_page_cache=likely_in_page_cache(cache.nbytes, available))
    assert served.depth == depth
    assert torch.equal(torch.cat([x for x, _ in served]), features)


def test_an_unknown_feed_is_refused(monkeypatch, tmp_path):
    cache, _, _ = _cache("host", "fp32", tmp_path)
    monkeypatch.setattr(device_feed, "FEED", "fast")
    with pytest.raises(ValueError, match="FEED"):
        feed(cache, 8, "cpu")


@pytest.mark.parametrize("cache", ["host", "disk"])
def test_sequential_run_fed_by_the_stream_trains_exactly_the_same_weights(monkeypatch, synthetic_data, cache):
    weights = {}
    for mode in ("plain", "stream"):
        monkeypatch.setattr(device_feed, "FEED", mode)
        torch.manual_seed(0)
        result = train(tiny_config(epochs=1, augment=False, cache=cache, cache_dtype="fp16"), data=synthetic_data,
                       out=None, quiet=True)
        weights[mode] = {k: v.clone() for k, v in result.net.state_dict().items()}
    assert weights["plain"].keys() == weights["stream"].keys()
    for name, tensor in weights["plain"].items():
        assert torch.equal(tensor, weights["stream"][name]), name
