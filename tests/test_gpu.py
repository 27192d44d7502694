"""CUDA behaviour: skipped on machines without a GPU (CI here has none); run them where there is one."""

import pytest
import torch

from edgetrgl.errors import UserError
from edgetrgl.training import train
from tests.conftest import tiny_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


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
