"""Splitting into modules, heads, the module boundary, and the parallel step against a reference."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.errors import UserError
from edgetrgl.losses import TauSchedule
from edgetrgl.models import BlockNet, create_model
from edgetrgl.modular import build_modular, split_blocks
from edgetrgl.step import local_step


def tiny_net(k=3):
    torch.manual_seed(0)
    net = create_model("resnet20", in_channels=3, image_size=16, width=4)
    return build_modular(net, k, 10, torch.zeros(2, 3, 16, 16))


def test_split_equal_depth_and_boundaries():
    assert split_blocks(9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert split_blocks(10, 4) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert split_blocks(9, 1) == [(0, 9)]
    assert split_blocks(9, 99, boundaries=[2, 7]) == [(0, 2), (2, 7), (7, 9)]
    with pytest.raises(UserError, match="larger than"):
        split_blocks(9, 10)
    with pytest.raises(UserError, match="strictly increasing"):
        split_blocks(9, 3, boundaries=[5, 5])
    with pytest.raises(UserError):
        split_blocks(9, 3, boundaries=[0, 4])


def test_heads_match_module_outputs():
    net = tiny_net(3)
    x = torch.randn(2, 3, 16, 16)
    for k in range(3):
        assert net(x, exit_at=k).shape == (2, 10)
    assert net.block_ranges == [(0, 3), (3, 6), (6, 9)]
    assert net.stages[0].stem is not None and net.stages[1].stem is None


def test_no_gradient_crosses_a_module_boundary():
    net = tiny_net(3)
    opts = [torch.optim.SGD(list(s.parameters()) + list(h.parameters()), lr=0.1) for s, h in zip(net.stages, net.heads)]
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    h0, _ = local_step(net.stages[0], net.heads[0], opts[0], x, y, (1.0, 1.0), 0.0)
    assert not h0.requires_grad
    for p in list(net.stages[0].parameters()) + list(net.heads[0].parameters()):
        p.grad = None
    local_step(net.stages[1], net.heads[1], opts[1], h0, y, (1.0, 1.0), 0.0)
    assert all(p.grad is None for p in net.stages[0].parameters())
    assert all(p.grad is None for p in net.heads[0].parameters())
    assert all(p.grad is not None for p in net.stages[1].parameters())


def test_parallel_step_equals_hand_written_reference():
    net = tiny_net(3)
    ref = copy.deepcopy(net)
    tau = TauSchedule("double", tau=0.8, num_modules=3)
    lr = 0.1
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))

    # edgetrgl's parallel step: module by module, each with its own optimizer, output detached
    opts = [torch.optim.SGD(list(s.parameters()) + list(h.parameters()), lr=lr) for s, h in zip(net.stages, net.heads)]
    h = x
    for k in range(3):
        h, _ = local_step(net.stages[k], net.heads[k], opts[k], h, y, tau.weights(k), 0.0)

    # reference: the formula written out, gradients by autograd.grad, plain SGD by hand
    h = x
    for k in range(3):
        stage, head = ref.stages[k], ref.heads[k]
        z = stage.stem(h) if stage.stem is not None else h
        transport = torch.zeros(())
        for block in stage.blocks:
            z, residues = block.forward_residues(z)
            transport = transport + sum(r.pow(2).mean() for r in residues)
        tau_k = 0.4 if k < 1 else 0.8  # double schedule: tau/2 for the first half (K // 2 = 1 module)
        loss = F.cross_entropy(head(z), y) + transport / (2 * tau_k)
        params = list(stage.parameters()) + list(head.parameters())
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= lr * g
        h = z.detach()

    for (name, a), (_, b) in zip(net.named_parameters(), ref.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), name


def test_bring_your_own_blocks_report_their_transport_kind():
    blocks = [nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),       # same shape: displacement
              nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())]  # shape changes: none
    net = BlockNet(stem=nn.Conv2d(3, 8, 3, padding=1), blocks=blocks)
    modular = build_modular(net, 2, 10, torch.zeros(2, 3, 16, 16))
    x = torch.zeros(2, 3, 16, 16)
    assert modular.stages[0].transport_kinds(x) == ["displacement"]
    assert modular.stages[1].transport_kinds(modular.stages[0](x)) == ["none"]
