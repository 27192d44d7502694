"""``+mbN`` in ``edgetrgl bench``: gradient accumulation as a step option of every method, and the host cache."""

from __future__ import annotations

import copy
import io
import json
import re

import pytest
import torch

from rich.console import Console

from edgetrgl.bench import BenchSetting, run_bench
from edgetrgl.bench.estimate import estimate_method
from edgetrgl.bench.joint import joint_step
from edgetrgl.bench.methods import bench_sgd, loss_weights
from edgetrgl.bench.setting import build_net
from edgetrgl.bench.variants import BASELINES, OURS, Method, parse_method
from edgetrgl.cli.main import main
from edgetrgl.errors import UserError

TINY = ["--model", "resnet20", "--model-option", "width=4", "--image-size", "16", "--batch-size", "16",
        "--modules", "3", "--steps", "1", "--warmup", "1", "--device", "cpu"]
SMALL = dict(model="resnet20", model_options={"width": 4}, image_size=16, batch_size=16, modules=3, steps=1, warmup=1)


def gradients_after_one_step(method: str, setting: BenchSetting, net) -> list[torch.Tensor]:
    torch.manual_seed(1)
    x = torch.randn(setting.batch_shape)
    y = torch.randint(0, setting.num_classes, (setting.batch_size,))
    optimizers = [bench_sgd(list(s.parameters()) + list(h.parameters()), setting) for s, h in zip(net.stages, net.heads)]
    joint_step(net, optimizers, x, y, loss_weights(method, setting, net.num_modules), parse_method(method))
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("method", ["e2e", "parallel-trgl"])
def test_accumulated_gradients_equal_the_full_batch_gradients(method):
    """Without BatchNorm, micro-batches of 4 (and an uneven 6: 6+6+4) add up to the batch's gradients."""
    setting = BenchSetting(model="vit_tiny", model_options={"dim": 16, "depth": 3, "heads": 2}, image_size=8,
                           batch_size=16, modules=3)
    net = build_net(setting, method)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    full = gradients_after_one_step(method, setting, copy.deepcopy(net))
    for n in (4, 6):
        accumulated = gradients_after_one_step(f"{method}+mb{n}", setting, copy.deepcopy(net))
        assert len(accumulated) == len(full)
        for a, b in zip(accumulated, full):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # and a micro-batch really changes the arithmetic (the check above is not comparing a step with itself)
    assert not all(torch.equal(a, b) for a, b in zip(accumulated, full))


@pytest.mark.parametrize("method", ["e2e", "checkpoint", "sequential-trgl", "sequential-trgl+ckpt"])
def test_the_estimate_shrinks_with_the_micro_batch(method):
    setting = BenchSetting(**SMALL)
    peaks = [estimate_method(setting, name)["peak_bytes"] for name in (method, f"{method}+mb8", f"{method}+mb2")]
    assert peaks[0] > peaks[1] > peaks[2] > 0, (method, peaks)


@pytest.mark.parametrize("base", BASELINES + OURS)
def test_every_method_accepts_a_micro_batch(base):
    setting = BenchSetting(**SMALL)
    name = f"{base}+mb4"
    assert parse_method(name).step_options()["micro_batch"] == 4
    assert 0 < estimate_method(setting, name)["peak_bytes"] < estimate_method(setting, base)["peak_bytes"]


def test_names_with_a_micro_batch_parse_into_one_canonical_name():
    assert parse_method("sequential-trgl+mb8+ckpt") == Method("sequential-trgl", True, "fp32", 8)
    assert parse_method("sequential-trgl+mb8+bf16+ckpt").name == "sequential-trgl+ckpt+bf16+mb8"
    assert parse_method("e2e+mb16").step_options() == {"checkpoint_blocks": False, "precision": "fp32", "micro_batch": 16}
    assert "micro_batch" not in parse_method("e2e").step_options()
    assert parse_method("offload+mb8").micro_batch == 8 and parse_method("checkpoint+mb8").is_baseline


@pytest.mark.parametrize("name, message", [
    ("e2e+mb0", "+mbN takes a positive number of samples per micro-batch"),
    ("e2e+mb", "+mbN takes a positive number of samples per micro-batch"),
    ("e2e+mbx", "+mbN takes a positive number of samples per micro-batch"),
    ("e2e+mb-2", "+mbN takes a positive number of samples per micro-batch"),
    ("sequential-trgl+mb4+mb8", "sets micro_batch twice"),
])
def test_bad_micro_batch_is_a_user_error(name, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_method(name)


@pytest.mark.parametrize("compare, extra, message", [
    ("e2e+mb0", [], "+mbN takes a positive number of samples per micro-batch"),
    ("checkpoint+mb4+mb4", [], "sets micro_batch twice"),
    ("e2e+mb16", [], "micro-batches of 16 must be smaller than --batch-size 16"),
    ("sequential-trgl+mb32", [], "micro-batches of 32 must be smaller than --batch-size 16"),
    ("e2e", ["--cache-samples", "-1"], "--cache-samples must be a non-negative integer, got -1"),
])
def test_bad_micro_batch_through_the_cli_is_one_line_and_exit_2(compare, extra, message, capsys):
    assert main(["bench", "--estimate", *TINY, "--compare", compare, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgetrgl: error: ") and message in err and err.count("\n") == 1


def test_estimate_counts_the_host_cache_beside_the_step(tmp_path):
    out = tmp_path / "est.json"
    assert main(["bench", "--estimate", *TINY, "--compare", "e2e+mb4,sequential-trgl+mb4", "--cache-samples", "1000",
                 "--json", str(out)]) == 0
    results = {r["method"]: r for r in json.loads(out.read_text())["results"]}
    seq, e2e = results["sequential-trgl+mb4"], results["e2e+mb4"]
    assert e2e["cache_bytes"] == 0 and e2e["unified_peak_bytes"] == e2e["peak_bytes"]
    # width-4 ResNet-20 at 16x16: modules 2 and 3 read 4x16x16 and 8x8x8 fp32 features per sample
    assert [m["cache_bytes"] for m in seq["per_module"]] == [0, 1000 * 1024 * 4, 1000 * 512 * 4]
    assert seq["cache_bytes"] == 1000 * (1024 + 512) * 4  # the fill of module 2's outputs holds both
    assert seq["unified_peak_bytes"] >= seq["peak_bytes"] + 1000 * 1024 * 4


def test_measured_micro_batches_run_in_fresh_processes_and_rss_counts_the_cache():
    """Three fresh workers (e2e, e2e+mb4, sequential-trgl+ckpt+mb4 keeping a 352 MiB cache), seconds each."""
    setting = BenchSetting(**SMALL, cache_samples=60000)
    report = run_bench(setting, ["e2e", "e2e+mb4", "sequential-trgl+ckpt+mb4"], console=Console(file=io.StringIO()),
                       timeout_s=240, threads=1)
    results = {r["method"]: r for r in report["results"]}
    for r in results.values():
        assert r["peak_bytes"] > 0 and r["time_per_sample_s"] > 0 and r["peak_rss_bytes"] >= 0, r["method"]
    assert results["e2e+mb4"]["peak_bytes"] < results["e2e"]["peak_bytes"]
    cached = results["sequential-trgl+ckpt+mb4"]
    assert cached["cache_bytes"] == 60000 * (1024 + 512) * 4  # modules 2 and 3's inputs, held at once in the fill
    assert cached["peak_rss_bytes"] >= 0.95 * cached["cache_bytes"]
    assert results["e2e+mb4"]["peak_rss_bytes"] < 0.5 * cached["cache_bytes"]  # e2e keeps no cache
    assert any("host cache of 60,000 samples" in note for note in report["notes"])
