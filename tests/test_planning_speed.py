"""edgetrgl/planning/speed.py: the rates fitted per GPU model (cuda_rates.json) and the modelled fallback."""

import json

import pytest

from edgetrgl.planning import speed
from edgetrgl.planning.speed import CUDA, CUDA_HALF, fitted_cuda_rates, machine_speed


def test_the_shipped_rates_file_parses():
    data = json.loads(speed.RATES_FILE.read_text())
    assert data["format"] == "edgetrgl-cuda-rates/1" and isinstance(data["gpus"], dict)
    for name, entry in data["gpus"].items():
        assert {"fp32", "bf16", "source"} <= entry.keys(), name


@pytest.fixture
def rates_file(tmp_path, monkeypatch):
    path = tmp_path / "cuda_rates.json"
    path.write_text(json.dumps({"format": "edgetrgl-cuda-rates/1", "gpus": {"Fake GPU 80GB": {
        "fp32": {"flops_per_s": 4e13, "bytes_per_s": 3e12, "seconds_per_op": 8e-6},
        "bf16": {"flops_per_s": None, "bytes_per_s": 3.1e12, "seconds_per_op": 9e-6},
        "source": "benchmarks/results/step_time_model_cuda-fake-gpu-80gb.json"}}}))
    monkeypatch.setattr(speed, "RATES_FILE", path)
    fitted_cuda_rates.cache_clear()
    yield path
    fitted_cuda_rates.cache_clear()


def test_a_listed_gpu_gets_its_fitted_rates(rates_file):
    fp32 = machine_speed("cuda", "fp32", gpu_name="Fake GPU 80GB")
    assert (fp32.flops_per_s, fp32.bytes_per_s, fp32.seconds_per_op) == (4e13, 3e12, 8e-6)
    assert "fitted on Fake GPU 80GB" in fp32.source
    half = machine_speed("cuda", "fp16", gpu_name="Fake GPU 80GB")  # fp16 runs at bf16's rates
    assert half.flops_per_s == float("inf") and half.bytes_per_s == 3.1e12  # null: a free term


def test_another_gpu_gets_the_modelled_rates(rates_file):
    assert machine_speed("cuda", "fp32", gpu_name="Other GPU") is CUDA
    assert machine_speed("cuda", "bf16", gpu_name="Other GPU") is CUDA_HALF
    assert machine_speed("cpu", "fp32", gpu_name="Fake GPU 80GB").source.startswith("fitted on a 2-core")


def test_a_missing_or_broken_file_means_no_fitted_rates(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    assert fitted_cuda_rates(tmp_path / "missing.json") == {} and fitted_cuda_rates(tmp_path / "broken.json") == {}
