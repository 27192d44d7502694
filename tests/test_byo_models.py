"""Bring-your-own models of any feature shape: heads by shape, feature data, names in reports."""

import io
import json

import pytest
import torch
from rich.console import Console
from torch import nn

import edgetrgl
from edgetrgl.data import synthetic_features, tensor_data
from edgetrgl.heads import ConvHead, LinearHead, SequenceHead, TokenHead, VectorHead, make_head, resolve_head_kind
from edgetrgl.modular import build_modular


# ---- a residual MLP and a 1-D conv net, written as a user would ----------------------------------
class MLPBlock(edgetrgl.ResidualBlock):
    def __init__(self, d):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward_residues(self, x):
        r = self.branch(x)
        return x + r, [r]


class ResidualMLP(edgetrgl.BlockNet):
    def __init__(self, d_in, width=32, depth=4):
        super().__init__(stem=nn.Linear(d_in, width), blocks=[MLPBlock(width) for _ in range(depth)])


class Conv1dBlock(nn.Module):  # not a ResidualBlock: keeps its shape, so it gets the displacement term
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(c, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU())

    def forward(self, x):
        return x + self.body(x)


def conv1d_net(channels_in=2, c=8, depth=4):
    return edgetrgl.BlockNet(stem=nn.Conv1d(channels_in, c, 3, padding=1), blocks=[Conv1dBlock(c) for _ in range(depth)])


def config(**overrides):
    values = dict(modules=2, epochs=3, batch_size=32, lr=0.05, device="cpu", out="", seed=0)
    values.update(overrides)
    return edgetrgl.TrainConfig(**values)


@pytest.fixture(scope="module")
def vectors():
    return synthetic_features((16,), num_classes=4, num_train=256, num_test=128, seed=0)


@pytest.fixture(scope="module")
def sequences():
    return synthetic_features((2, 32), num_classes=4, num_train=256, num_test=128, seed=0)


# ---- heads follow the feature shape ------------------------------------------------------------
def test_default_head_follows_the_feature_rank():
    assert isinstance(make_head("conv", (12,), 5), VectorHead)
    assert isinstance(make_head("token", (12,), 5), VectorHead)
    assert isinstance(make_head("conv", (8, 20), 5), SequenceHead)
    assert isinstance(make_head("token", (20, 8), 5), TokenHead)
    assert isinstance(make_head("conv", (8, 6, 6), 5), ConvHead)
    assert isinstance(make_head("conv", (8, 4, 4, 4), 5), LinearHead)
    for shape, kind in [((12,), "conv"), ((8, 20), "conv"), ((20, 8), "token"), ((8, 6, 6), "conv"), ((8, 4, 4, 4), "conv")]:
        for style in ("auto", "linear"):
            head = make_head(kind, shape, 5, style).eval()
            assert head(torch.randn(3, *shape)).shape == (3, 5)
    with pytest.raises(ValueError):
        make_head("conv", (), 5)


def test_auto_head_kind_reads_rank_2_as_sequences_only_with_conv1d():
    assert resolve_head_kind("auto", [nn.Conv1d(2, 4, 3)]) == "conv"
    assert resolve_head_kind("auto", [nn.Linear(2, 4)]) == "token"
    assert resolve_head_kind("token", [nn.Conv1d(2, 4, 3)]) == "token"
    net = build_modular(conv1d_net(), 2, 4, torch.zeros(2, 2, 32))
    assert [type(h) for h in net.heads] == [SequenceHead, SequenceHead]
    net = build_modular(ResidualMLP(16), 2, 4, torch.zeros(2, 16))
    assert [type(h) for h in net.heads] == [VectorHead, VectorHead]
    assert net.name == "ResidualMLP"
    assert edgetrgl.BlockNet(stem=nn.Identity(), blocks=[nn.Identity()]).name == "custom"


def test_mixed_ranks_get_a_head_each():
    """A conv stem then a flatten: image heads early, a vector head late, in one network."""
    blocks = [nn.Conv2d(4, 4, 3, padding=1), nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()), nn.Linear(16, 16)]
    net = build_modular(edgetrgl.BlockNet(stem=nn.Conv2d(1, 4, 3, padding=1), blocks=blocks), 3, 10, torch.zeros(2, 1, 8, 8))
    assert [type(h) for h in net.heads] == [ConvHead, VectorHead, VectorHead]
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


# ---- training through the Python API -------------------------------------------------------------
@pytest.mark.parametrize("regime", ["sequential", "parallel"])
def test_residual_mlp_trains_on_vectors(vectors, regime, tmp_path):
    out = tmp_path / "run"
    text = io.StringIO()
    result = edgetrgl.train(config(regime=regime, cache="host", out=str(out)), model=ResidualMLP(16), data=vectors,
                            console=Console(file=text, width=200))
    assert all(isinstance(h, VectorHead) for h in result.net.heads)
    assert result.last_module["test_accuracy"] >= 0.8  # 4 classes: chance is 0.25
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["model"] == "ResidualMLP"
    assert summary["dataset"]["sample_shape"] == [16]
    assert "ResidualMLP" in text.getvalue() and "resnet20" not in text.getvalue()
    if regime == "sequential":
        assert summary["cache"] == "host" and summary["data_mode"].startswith("host cache")
    loaded = edgetrgl.load_run(out, model=ResidualMLP(16))
    assert edgetrgl.evaluate(loaded.net, vectors[1]) == pytest.approx([m["test_accuracy"] for m in result.modules])


@pytest.mark.parametrize("regime", ["sequential", "parallel"])
def test_conv1d_model_trains_on_sequences(sequences, regime):
    result = edgetrgl.train(config(regime=regime, cache="host"), model=conv1d_net(), data=sequences, quiet=True)
    assert all(isinstance(h, SequenceHead) for h in result.net.heads)
    assert result.config.model == "custom"
    assert result.last_module["test_accuracy"] >= 0.6


def test_budget_plan_works_on_vectors(vectors):
    """A budget below one module's step on vectors: the fake-tensor estimates and the planner take
    the data's own shape, not (C, H, W), split the network to fit, and every module's measured peak
    stays inside the budget."""
    budget = 90_000  # bytes; the whole network (K=1) needs about 150 kB here
    result = edgetrgl.train(config(budget=budget, modules="auto", epochs=1), model=ResidualMLP(16), data=vectors,
                            quiet=True)
    plan = result.extra["plan"]
    assert plan["budget"] == budget and plan["num_modules"] >= 2 and len(result.modules) == plan["num_modules"]
    estimates = plan["estimates"]["modules"]
    assert len(estimates) == plan["num_modules"] and all(0 < m["estimated_peak_bytes"] <= budget for m in estimates)
    measured = [m["peak_bytes"] for m in result.modules]
    assert all(0 < peak <= budget for peak in measured), measured
    assert result.last_module["test_accuracy"] >= 0.6  # 4 classes: chance is 0.25


def test_custom_head_factory_is_used(vectors):
    seen = []

    class MyHead(nn.Module):
        def __init__(self, shape, num_classes):
            super().__init__()
            seen.append((shape, num_classes))
            self.fc = nn.Linear(shape[0], num_classes)

        def forward(self, x):
            return self.fc(x)

    result = edgetrgl.train(config(regime="parallel", epochs=2), model=ResidualMLP(16), data=vectors, quiet=True,
                            head_factory=MyHead)
    assert all(isinstance(h, MyHead) for h in result.net.heads)
    assert seen[-2:] == [((32,), 4), ((32,), 4)]
    assert result.last_module["test_accuracy"] >= 0.8
    via_net = ResidualMLP(16)
    via_net.head_factory = MyHead
    assert all(isinstance(h, MyHead) for h in build_modular(via_net, 2, 4, torch.zeros(2, 16)).heads)


def test_tensor_data_rejects_mismatched_shapes():
    with pytest.raises(edgetrgl.UserError, match="per-sample shape"):
        tensor_data(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(edgetrgl.UserError, match="labels must lie"):
        tensor_data(torch.zeros(4, 3), torch.tensor([0, 1, 2, 5]), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long),
                    num_classes=3)
