"""--recalibrate-bn: BatchNorm statistics recomputed exactly after training, where few steps leave
the running averages stale (the paper's recipe, orthogonal init with gain 0.1, on little data)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import edgetrgl
from edgetrgl.config import TrainConfig
from edgetrgl.data import load_dataset
from edgetrgl.errors import UserError
from edgetrgl.training.batchnorm import recalibrate_batchnorm
from tests.conftest import tiny_config

# the paper's optimiser and init, 8 steps (512 images, batch 64, 1 epoch): eval mode sees stale statistics
PAPER_FEW_STEPS = dict(lr=0.003, lr_schedule="constant", init="orthogonal", init_gain=0.1, epochs=1)


def test_statistics_are_the_exact_averages_and_nothing_else_changes():
    torch.manual_seed(0)
    stage = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 6), nn.BatchNorm1d(6))
    stage.eval(), head.train()
    batches = [(torch.randn(16, 3, 8, 8) * 3 + 1, torch.zeros(16)) for _ in range(4)]
    weights = {k: v.clone() for k, v in {**stage.state_dict(), **head.state_dict()}.items() if "running" not in k
               and "num_batches" not in k}
    assert recalibrate_batchnorm([(stage, head)], batches, "cpu")
    with torch.no_grad():
        conv = torch.cat([stage[0](x) for x, _ in batches])  # (64, 4, 8, 8): the BN's inputs, all of them
        features = torch.cat([head[1](head[0](stage[2](stage[1](stage[0](x))))) for x, _ in batches])
    bn = stage[1]
    # momentum None: the mean of the per-batch means and unbiased variances (equal batches: the exact mean)
    per_batch = conv.view(4, 16, 4, 8, 8).transpose(1, 2).reshape(4, 4, -1)
    torch.testing.assert_close(bn.running_mean, per_batch.mean(-1).mean(0))
    torch.testing.assert_close(bn.running_var, per_batch.var(-1).mean(0))
    assert head[2].running_mean.shape == (6,) and not torch.allclose(head[2].running_var, torch.ones(6))
    assert features.shape == (64, 6)
    assert stage.training is False and head.training is True  # modes as they were
    after = {**stage.state_dict(), **head.state_dict()}
    assert all(torch.equal(after[k], v) for k, v in weights.items())  # weights untouched


def test_no_batchnorm_is_a_no_op():
    stage, head = nn.Linear(3, 3), nn.Linear(3, 2)
    assert not recalibrate_batchnorm([(stage, head)], [torch.randn(4, 3)], "cpu")


@pytest.mark.parametrize("regime", ["sequential", "parallel", "e2e"])
def test_few_steps_score_chance_without_it_and_learn_with_it(regime, synthetic_data):
    modules = 1 if regime == "e2e" else 3
    runs = {recal: edgetrgl.train(tiny_config(regime=regime, modules=modules, recalibrate_bn=recal, **PAPER_FEW_STEPS),
                                  data=synthetic_data, quiet=True) for recal in (False, True)}
    stale = [m["test_accuracy"] for m in runs[False].modules]
    fresh = [m["test_accuracy"] for m in runs[True].modules]
    assert max(stale) < 0.12  # 10 classes: chance, whatever the module
    assert max(fresh) > max(stale) + 0.04
    if regime != "e2e":  # the module-wise heads learn a lot in 8 steps once eval mode is right
        assert max(fresh) > 0.3
    assert runs[True].extra["phases_s"]["recalibrate_bn"] > 0 and runs[False].extra["phases_s"]["recalibrate_bn"] == 0


def test_weights_are_the_same_with_or_without_it_in_parallel():
    """Recalibrating only touches BatchNorm buffers, after the last step: every parameter is identical,
    and every BatchNorm's running statistics are new."""
    few = load_dataset("synthetic", num_train=128, num_test=64, seed=0)  # two runs: keep them short
    nets = [edgetrgl.train(tiny_config(regime="parallel", recalibrate_bn=recal, epochs=1), data=few, quiet=True).net
            for recal in (False, True)]
    a, b = (dict(n.named_parameters()) for n in nets)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    stale, fresh = ({name: m for name, m in n.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
                    for n in nets)
    assert stale and stale.keys() == fresh.keys()
    for name in stale:
        assert not torch.allclose(stale[name].running_mean, fresh[name].running_mean), name
        assert not torch.allclose(stale[name].running_var, fresh[name].running_var), name


def test_a_setting_that_is_not_a_bool_is_one_clear_error():
    with pytest.raises(UserError, match="--recalibrate-bn must be true or false"):
        TrainConfig(recalibrate_bn="yes")


def test_torchrun_refuses_it_before_anything_starts():
    from edgetrgl.distributed.run import train

    with pytest.raises(UserError, match="--recalibrate-bn runs in one process"):
        train(tiny_config(regime="pipeline", recalibrate_bn=True))


@pytest.mark.parametrize("point", ["step:13", "cache_write:2"])  # module 2; module 1's cache, after its recalibration
def test_killed_and_resumed_it_is_bit_identical(point, tmp_path):
    from tests.test_reliability import assert_same_run, edgetrgl as cli, tiny_args

    args = [*tiny_args(tmp_path, "sequential"), "--recalibrate-bn"]
    assert cli("train", *args, "--out", str(tmp_path / "reference")).returncode == 0
    crashed = cli("train", *args, "--out", str(tmp_path / "run"), env={"EDGETRGL_CRASH_AT": point})
    assert crashed.returncode == -9, crashed.stderr
    resumed = cli("train", "--resume", str(tmp_path / "run"), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "reference", tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["recalibrate_bn"] is True
