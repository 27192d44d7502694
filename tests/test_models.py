"""Model registry tests: every registered model builds, runs block by block, and trains (CPU, tiny sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.blocks import ResidualBlock, run_block
from edgetrgl.errors import UserError
from edgetrgl.models import BlockNet, create_model, list_models, model_info

# Tiny flavour of each model for the gradient test; models without size options run at defaults.
TINY_OPTIONS: dict[str, dict] = {
    "resnet20": {"width": 4},
    "resnet56": {"width": 4},
    "resnet110": {"width": 2},
    "kmresnet4": {"width": 8},
    "kmresnet8": {"width": 8},
    "kmresnet16": {"width": 4},
    "vgg11_bn": {"width_mult": 1 / 16},
    "vgg19_bn": {"width_mult": 1 / 16},
    "vit_tiny": {"dim": 16, "depth": 2, "heads": 2},
    "vit_small": {"dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2.0},
}
RESNETS = ["resnet20", "resnet56", "resnet110", "resnet18", "resnet50", "kmresnet4", "kmresnet8", "kmresnet16"]


def run_net(net: BlockNet, x: torch.Tensor) -> tuple[torch.Tensor, list, list[torch.Tensor]]:
    """Stem then every block via run_block; returns (output, kinds, transport terms)."""
    h = net.stem(x)
    kinds, costs = [], []
    for block in net.blocks:
        h, cost, kind = run_block(block, h)
        kinds.append(kind)
        if cost is not None:
            costs.append(cost)
    return h, kinds, costs


def pooled(net: BlockNet, h: torch.Tensor) -> torch.Tensor:
    """Mean-pool the final features to (B, C): over spatial dims for "conv", over tokens for "token"."""
    return h.mean(dim=1) if net.head_kind == "token" else h.mean(dim=(2, 3))


def parameters(net: BlockNet) -> list[tuple[str, nn.Parameter]]:
    named = [(f"stem.{n}", p) for n, p in net.stem.named_parameters()]
    for i, block in enumerate(net.blocks):
        named += [(f"blocks.{i}.{n}", p) for n, p in block.named_parameters()]
    return named


def test_registered_names():
    assert set(list_models()) == {
        "resnet20", "resnet56", "resnet110", "resnet18", "resnet50",
        "kmresnet4", "kmresnet8", "kmresnet16", "vgg11_bn", "vgg19_bn", "vit_tiny", "vit_small",
    }
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_finite_gradient(name):
    torch.manual_seed(0)
    in_channels = 1 if name.startswith(("vgg", "vit")) else 3
    image_size = 28 if in_channels == 1 else 16
    net = create_model(name, in_channels=in_channels, image_size=image_size, **TINY_OPTIONS.get(name, {}))
    x = torch.randn(2, in_channels, image_size, image_size)
    h, kinds, costs = run_net(net, x)
    head = nn.Linear(pooled(net, h).shape[1], 10)
    loss = F.cross_entropy(head(pooled(net, h)), torch.tensor([1, 7])) + torch.stack(costs).sum()
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in parameters(net):
        assert p.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: {pname} has a non-finite gradient"
    # Every residual model reports a residue for every block, downsampling ones included.
    if not name.startswith("vgg"):
        assert kinds == ["residual"] * len(net.blocks)


@pytest.mark.parametrize("name", list_models())
def test_default_size_builds(name):
    net = create_model(name)
    assert isinstance(net, BlockNet) and net.name == name and len(net.blocks) > 0
    assert net.extra["create_args"]["image_size"] == 32
    assert model_info(name)


@pytest.mark.parametrize("in_channels,image_size", [(1, 16), (3, 28), (1, 32), (3, 96)])
@pytest.mark.parametrize("name", RESNETS + ["vgg11_bn", "vgg19_bn", "vit_tiny"])
def test_image_sizes(name, in_channels, image_size):
    net = create_model(name, in_channels=in_channels, image_size=image_size, **TINY_OPTIONS.get(name, {}))
    net.stem.eval()
    for b in net.blocks:
        b.eval()
    with torch.no_grad():
        h, _, _ = run_net(net, torch.randn(1, in_channels, image_size, image_size))
    assert torch.isfinite(h).all()


def test_residue_shapes_equal_block_output():
    for name in list_models():
        net = create_model(name, in_channels=3, image_size=16, **TINY_OPTIONS.get(name, {}))
        h = net.stem(torch.randn(2, 3, 16, 16))
        for block in net.blocks:
            if isinstance(block, ResidualBlock):
                out, residues = block.forward_residues(h)
                assert all(r.shape == out.shape for r in residues), name
                assert len(residues) == (2 if name.startswith("vit") else 1), name
                h = out
            else:
                h = block(h)


def test_block_counts():
    assert len(create_model("resnet20").blocks) == 9
    assert len(create_model("resnet56", width=2).blocks) == 27
    assert len(create_model("resnet110", width=2).blocks) == 54
    assert len(create_model("kmresnet8", width=4).blocks) == 8
    assert len(create_model("kmresnet4", width=4, depth=6).blocks) == 6
    assert len(create_model("vgg11_bn", width_mult=0.1).blocks) == 7
    assert len(create_model("vgg19_bn", width_mult=0.1).blocks) == 15
    assert len(create_model("resnet18").blocks) == 8
    assert len(create_model("resnet50").blocks) == 16


def test_km_resnet_downsamples_at_midpoint():
    net = create_model("kmresnet8", width=4, image_size=32)
    h = net.stem(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, 4, 16, 16)
    shapes = []
    for block in net.blocks:
        h = block(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(4, 16, 16)] * 4 + [(8, 8, 8)] * 4


def test_vgg_transport_kinds():
    # Equal-shape blocks get a displacement term; channel changes and pools get none.
    net = create_model("vgg11_bn", width_mult=1 / 16, image_size=32)
    _, kinds, _ = run_net(net, torch.randn(2, 3, 32, 32))
    assert kinds == ["none"] * 5 + ["displacement", "none"]
    # At 16x16 the map is 1x1 before the last pool, which is skipped: that block keeps its shape.
    net = create_model("vgg11_bn", width_mult=1 / 16, image_size=16)
    h, kinds, _ = run_net(net, torch.randn(2, 3, 16, 16))
    assert kinds == ["none"] * 5 + ["displacement"] * 2 and h.shape[2:] == (1, 1)
    net = create_model("vgg19_bn", width_mult=1 / 16, image_size=32)
    _, kinds, _ = run_net(net, torch.randn(2, 3, 32, 32))
    assert kinds.count("displacement") == 7


def test_vit_patch_size():
    assert create_model("vit_tiny", image_size=28, dim=8, heads=2).extra["patch_size"] == 4
    assert create_model("vit_tiny", image_size=30, dim=8, heads=2).extra["patch_size"] == 5
    assert create_model("vit_tiny", image_size=28, patch_size=7, dim=8, heads=2).extra["patch_size"] == 7
    with pytest.raises(UserError, match="does not divide"):
        create_model("vit_tiny", image_size=28, patch_size=5)
    with pytest.raises(UserError, match="divisible by heads"):
        create_model("vit_tiny", dim=10, heads=3)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_wrapper_matches_original_forward(arch):
    torch.manual_seed(0)
    net = create_model(arch, image_size=16)
    h = net.stem(torch.randn(2, 3, 16, 16))
    for block in net.blocks:
        for mode in (True, False):  # train and eval BN
            block.train(mode)
            out, [r] = block.forward_residues(h)
            assert torch.equal(out, block.block(h.clone()))
            assert r.shape == out.shape
        h = out


def test_unknown_model_and_option_raise_user_error():
    with pytest.raises(UserError, match="unknown model 'nope'; known: kmresnet16"):
        create_model("nope")
    with pytest.raises(UserError, match="unknown model"):
        model_info("nope")
    with pytest.raises(UserError, match="does not accept option"):
        create_model("resnet20", widht=4)
    with pytest.raises(UserError, match="does not accept option"):
        create_model("resnet18", width=4)
    with pytest.raises(UserError, match="width must be a positive integer"):
        create_model("resnet20", width=0)
    with pytest.raises(UserError, match="image_size"):
        create_model("resnet20", image_size=0)


def test_list_models_filters():
    assert list_models("resnet*") == ["resnet110", "resnet18", "resnet20", "resnet50", "resnet56"]
    assert list_models("vit_*") == ["vit_small", "vit_tiny"]
    assert list_models("nothing*") == []
