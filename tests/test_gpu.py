"""CUDA behaviour: skipped on machines without a GPU (CI here has none); run them where there is one."""

import pytest
import torch

from edgetrgl.errors import UserError
from edgetrgl.api import train
from tests.conftest import tiny_config



def cuda(test):
    """Skipped without a GPU; marked `cuda`, so `pytest -m cuda` (benchmarks/gpu/run.sh's first step) selects it."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


@cuda
def test_sequential_on_cuda_records_allocator_peaks(synthetic_data):
    result = train(tiny_config(device="cuda", epochs=1), data=synthetic_data, out=None, quiet=True)
    for m in result.modules:
        assert m["cuda_max_allocated_bytes"] > 0
        assert m["cuda_max_reserved_bytes"] >= m["cuda_max_allocated_bytes"]


@cuda
def test_cached_run_on_cuda_matches_recomputing(synthetic_data):
    runs = [train(tiny_config(device="cuda", epochs=1, augment=False, cache=c), out=None, quiet=True)
            for c in ("host", "none")]
    assert [m["test_accuracy"] for m in runs[0].modules] == pytest.approx([m["test_accuracy"] for m in runs[1].modules], abs=0.02)


@cuda
def test_a_tiny_budget_on_cuda_is_a_clean_error(synthetic_data):
    with pytest.raises(UserError):
        train(tiny_config(device="cuda", budget=10_000), data=synthetic_data, out=None, quiet=True)


@cuda
def test_prefetcher_pins_and_moves_batches_to_cuda():
    from edgetrgl.cache import Prefetcher

    batches = [(torch.randn(4, 3), torch.arange(4)) for _ in range(3)]
    moved = list(Prefetcher(batches, torch.device("cuda")))
    assert len(moved) == 3 and all(x.is_cuda and y.is_cuda for x, y in moved)
    assert torch.equal(moved[1][0].cpu(), batches[1][0])


@cuda
@pytest.mark.parametrize("method", ["e2e", "checkpoint", "offload", "parallel-trgl", "sequential-trgl"])
def test_bench_records_allocator_peaks_on_cuda(method):
    from edgetrgl.bench.methods import measure_method
    from edgetrgl.bench.setting import BenchSetting, build_net

    setting = BenchSetting(model="resnet20", model_options={"width": 4}, image_size=16, batch_size=8, modules=2,
                           steps=1, warmup=1, device="cuda")
    result = measure_method(setting, method, build_net(setting, method))
    assert result["peak_bytes"] > 0 and result["time_per_sample_s"] > 0
    assert 0 < result["cuda_max_allocated_bytes"] <= result["cuda_max_reserved_bytes"]


@cuda
def test_disk_cache_on_cuda_matches_host_cache(synthetic_data):
    runs = [train(tiny_config(device="cuda", epochs=1, augment=False, cache=c), data=synthetic_data, out=None, quiet=True)
            for c in ("host", "disk")]
    assert [m["test_accuracy"] for m in runs[0].modules] == pytest.approx([m["test_accuracy"] for m in runs[1].modules], abs=0.02)


@cuda
def test_budget_on_cuda_keeps_the_allocator_under_it(synthetic_data):
    budget = 256 * 2**20  # roomy: cuBLAS and cuDNN workspaces go through the caching allocator too
    result = train(tiny_config(device="cuda", epochs=1, budget=budget), data=synthetic_data, out=None, quiet=True)
    assert 0 < max(m["cuda_max_reserved_bytes"] for m in result.modules) <= budget


def _filled_cache(tmp_path, backend: str, dtype: str, n: int = 200, shape=(16, 24, 24)):
    from edgetrgl.cache import ActivationCache

    torch.manual_seed(0)
    features, labels = torch.randn(n, *shape), torch.randint(0, 10, (n,))
    cache = ActivationCache(n, backend=backend, storage_dtype=dtype, root=tmp_path / "c" if backend == "disk" else None,
                            shard_size=64)
    for start in range(0, n, 50):
        cache.append(0, features[start:start + 50], labels[start:start + 50])
    cache.finish()
    return cache


@cuda
@pytest.mark.parametrize("backend,dtype", [("host", "fp32"), ("host", "fp16"), ("disk", "bf16")])
def test_cuda_feed_gathers_into_pinned_memory_and_serves_the_plain_batches(monkeypatch, tmp_path, backend, dtype):
    from edgetrgl.cache import device_feed

    cache = _filled_cache(tmp_path, backend, dtype)
    x, y = next(cache.batches(32, pin=True, as_float=False))
    assert x.is_pinned() and y.is_pinned() and x.dtype == cache.storage_dtype
    order = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    served = {}
    for mode in ("plain", "auto"):  # auto: the pinned side-stream feed on CUDA
        monkeypatch.setattr(device_feed, "FEED", mode)
        served[mode] = [(a.cpu(), b.cpu()) for a, b in device_feed.feed(cache, 32, "cuda", order=order)]
    assert len(served["auto"]) == 7
    for (xs, ys), (xp, yp) in zip(served["auto"], served["plain"]):
        assert xs.dtype == torch.float32 and torch.equal(xs, xp) and torch.equal(ys, yp)
    cache.close()


@cuda
def test_cuda_feed_batches_survive_slow_steps_on_the_compute_stream(tmp_path):
    """Each batch is read at once and again after long kernels: without wait_stream the first read could see a
    copy in progress; without record_stream the allocator could hand the batch's memory to the next batch's
    copy (on the side stream, which does not wait for the slow kernels) before the second read ran."""
    from edgetrgl.cache.device_feed import feed

    cache = _filled_cache(tmp_path, "host", "fp32", n=256, shape=(64, 32, 32))
    busy = torch.randn(4096, 4096, device="cuda")
    reads = []
    for x, _ in feed(cache, 16, "cuda"):
        early = x.double().sum()
        h = busy
        for _ in range(10):  # milliseconds of work on the compute stream, independent of x
            h = torch.tanh(h @ busy)
        late = x.double().sum()
        reads.append((early, late))
        del x, h  # freed at once: its memory is the next allocation's candidate
    expected = [float(cache.gather(0, torch.arange(s, min(s + 16, 256))).double().sum()) for s in range(0, 256, 16)]
    assert [float(e) for e, _ in reads] == pytest.approx(expected, rel=1e-9)
    assert [float(late) for _, late in reads] == pytest.approx(expected, rel=1e-9)


@cuda
@pytest.mark.parametrize("cache", ["host", "disk"])
def test_sequential_on_cuda_fed_by_the_stream_trains_the_plain_weights(monkeypatch, synthetic_data, cache):
    """Bit-identical weights whenever the GPU's kernels are deterministic (the plain feed run twice agrees)."""
    from edgetrgl.cache import device_feed

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    runs = []
    for mode in ("plain", "plain", "auto"):
        monkeypatch.setattr(device_feed, "FEED", mode)
        torch.manual_seed(0)
        result = train(tiny_config(device="cuda", epochs=1, augment=False, cache=cache, cache_dtype="fp16"),
                       data=synthetic_data, out=None, quiet=True)
        runs.append({k: v.detach().cpu().clone() for k, v in result.net.state_dict().items()})
    if not all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0]):
        pytest.skip("two plain runs differ on this GPU (non-deterministic kernels): nothing to compare with")
    for name, tensor in runs[0].items():
        assert torch.equal(tensor, runs[2][name]), name
