"""CUDA behaviour: skipped on machines without a GPU (CI here has none); run them where there is one."""

import pytest
import torch

from edgetrgl.errors import UserError
from edgetrgl.training import train
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
