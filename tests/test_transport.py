"""The fused transport gradient and checkpointing inside a module: the same gradients as the plain
step on every zoo model family, at (about) VanGL's memory; mixed precision runs and is counted."""

import copy

import pytest
import torch
from torch import nn

from edgetrgl.blocks import ResidualBlock
from edgetrgl.cli.main import build_parser
from edgetrgl.cli.train import config_from_args
from edgetrgl.config import TrainConfig
from edgetrgl.errors import UserError
from edgetrgl.memory.estimate import estimate_sequential
from edgetrgl.memory.tensor import track_live_peak
from edgetrgl.models import create_model
from edgetrgl.modular import Stage, build_modular
from edgetrgl.precision import autocast_for
from edgetrgl.api import train
from edgetrgl.step import local_step
from tests.conftest import tiny_config

# one tiny flavour per zoo family: CIFAR ResNet, K-M ResNet (projection shortcut), VGG
# (displacement), ViT (two residues per block), torchvision ResNet (no width option)
FAMILIES = {
    "resnet20": dict(width=4),
    "kmresnet4": dict(width=8),
    "vgg11_bn": dict(width_mult=0.125),
    "vit_tiny": dict(dim=16, depth=2, heads=2),
    "resnet18": {},
}
W = 0.05  # transport weight


def _net(name: str, size: int = 16, modules: int = 2):
    torch.manual_seed(0)
    net = create_model(name, in_channels=3, num_classes=10, image_size=size, **FAMILIES[name])
    return build_modular(net, modules, 10, torch.zeros(2, 3, size, size)).train()


def _step(net, k: int, x, y, weight: float = W, **options):
    """One local step of module k on a copy of ``net``: gradients, buffers, logged figures, output."""
    net = copy.deepcopy(net)
    stage, head = net.stages[k], net.heads[k]
    params = list(stage.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(params, lr=0.0)
    out, res = local_step(stage, head, optimizer, x, y, (1.0, weight), 0.0, **options)
    return [p.grad.clone() for p in params], [b.clone() for b in stage.buffers()], res, out


def _inputs(net, size: int = 16, batch: int = 8):
    torch.manual_seed(1)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        h = net.stages[0].eval()(x)
    net.train()
    return [x, h], torch.randint(0, 10, (batch,))


def _assert_same_step(reference, other, exact: bool = True) -> None:
    """Exact, or (a Linear or BatchNorm tail's closed form, see transport.py) within fp32 accuracy."""
    def same(a, b):
        return torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max()))

    for a, b in zip(reference[0], other[0]):
        assert same(a, b)
    for a, b in zip(reference[1], other[1]):  # BatchNorm running statistics moved once, the same way
        assert torch.equal(a, b)
    # the logged figure: a closed form or a one-pass sum where the loss does not differentiate it
    assert torch.allclose(reference[2].transport, other[2].transport, rtol=1e-5, atol=0)
    assert torch.equal(reference[2].ce, other[2].ce)
    assert torch.equal(reference[3], other[3])


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("options", [
    dict(transport_impl="fused"),
    dict(transport_impl="autograd", checkpoint_blocks=True),
    dict(transport_impl="fused", checkpoint_blocks=True),
], ids=["fused", "autograd+ckpt", "fused+ckpt"])
def test_gradients_equal_the_plain_step(name, options):
    net = _net(name)
    xs, y = _inputs(net)
    for k, x in enumerate(xs):
        reference = _step(net, k, x, y, transport_impl="autograd")
        assert float(reference[2].transport) > 0 or name == "vgg11_bn"  # vgg's first module changes shape in every block
        # a Linear or BatchNorm tail rebuilds r in closed form (transport.py): fp32 accuracy, not bit for bit
        exact = name == "vgg11_bn" or options["transport_impl"] == "autograd"
        _assert_same_step(reference, _step(net, k, x, y, **options), exact)


@pytest.mark.parametrize("name", ["resnet20", "vit_tiny", "vgg11_bn"])
def test_gradients_equal_with_micro_batches(name):
    net = _net(name)
    xs, y = _inputs(net)
    for k, x in enumerate(xs):
        reference = _step(net, k, x, y, transport_impl="autograd", micro_batch=3)
        fused = _step(net, k, x, y, transport_impl="fused", micro_batch=3, checkpoint_blocks=True)
        _assert_same_step(reference, fused, exact=name == "vgg11_bn")


def test_vangl_is_unchanged_by_the_options():
    net = _net("resnet20")
    xs, y = _inputs(net)
    reference = _step(net, 0, xs[0], y, weight=0.0, transport_impl="autograd")
    _assert_same_step(reference, _step(net, 0, xs[0], y, weight=0.0, checkpoint_blocks=True))


class Scale(ResidualBlock):
    """A user's block that computes its residue without ``residue_tail``: the plain formulation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward_residues(self, x):
        r = self.conv(x)
        return x + r, [r]


def test_a_block_without_residue_tail_keeps_the_plain_gradient():
    torch.manual_seed(0)
    stage, head = Stage([Scale(), Scale()]), nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    net = nn.ModuleList([stage, head])
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))

    def grads(impl):
        s, h = copy.deepcopy(net)
        local_step(s, h, torch.optim.SGD(list(s.parameters()) + list(h.parameters()), lr=0.0), x, y, (1.0, W), 0.0,
                   transport_impl=impl)
        return [p.grad for p in list(s.parameters()) + list(h.parameters())]

    for a, b in zip(grads("autograd"), grads("fused")):
        assert torch.equal(a, b)


def _module_peaks(name: str, weight: float, batch: int = 32, size: int = 16, **options) -> list[int]:
    torch.manual_seed(0)
    net = build_modular(create_model(name, in_channels=3, num_classes=10, image_size=size, **MEMORY_FAMILIES[name]),
                        2, 10, torch.zeros(2, 3, size, size)).train()
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    peaks = []
    for stage, head in zip(net.stages, net.heads):
        optimizer = torch.optim.SGD(list(stage.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9)
        step = lambda: local_step(stage, head, optimizer, x, y, (1.0, weight), 0.0, **options)  # noqa: E731
        step()  # steady state: gradients and momentum exist
        peaks.append(track_live_peak(step, stage, head, optimizer, x, y))
        with torch.no_grad():
            x = stage.eval()(x)
    return peaks


# activations large against parameters; vgg19 (not 11) has blocks that keep their shape at 32x32
MEMORY_FAMILIES = {"resnet20": dict(width=4), "kmresnet4": dict(width=8), "vgg19_bn": dict(width_mult=0.0625),
                   "vit_tiny": dict(dim=16, depth=2, heads=2)}


@pytest.mark.parametrize("name", list(MEMORY_FAMILIES))
def test_a_trgl_module_costs_what_a_vangl_module_costs(name):
    vangl = _module_peaks(name, 0.0, size=32)
    fused = _module_peaks(name, W, size=32, transport_impl="fused")
    plain = _module_peaks(name, W, size=32, transport_impl="autograd")
    for v, f, p in zip(vangl, fused, plain):
        assert f <= 1.03 * v
    assert max(p / v for p, v in zip(plain, vangl)) > 1.05  # the residues the plain term keeps alive


def test_checkpoint_blocks_cuts_a_deep_modules_peak():
    vangl = _module_peaks("resnet20", 0.0, size=32)
    checkpointed = _module_peaks("resnet20", W, size=32, checkpoint_blocks=True)
    assert checkpointed[0] < 0.8 * vangl[0]


def test_estimates_count_checkpointing_and_precision():
    def build():
        return build_modular(create_model("resnet20", in_channels=3, image_size=16, width=4), 2, 10, torch.zeros(2, 3, 16, 16))

    def worst(**options):
        return max(p.peak_bytes for p in estimate_sequential(build, (32, 3, 16, 16), 10, **options))

    plain = worst()
    assert worst(checkpoint_blocks=True) < 0.8 * plain
    assert worst(precision="bf16") < 0.9 * plain
    assert worst(precision="fp16") == worst(precision="bf16")


def test_bf16_step_on_cpu_runs_and_squares_in_fp32():
    net = _net("vit_tiny")
    xs, y = _inputs(net)
    fused = _step(net, 0, xs[0], y, precision="bf16")
    plain = _step(net, 0, xs[0], y, precision="bf16", transport_impl="autograd")
    assert fused[2].transport.dtype == torch.float32 and fused[3].dtype == torch.float32
    assert torch.allclose(fused[2].transport, plain[2].transport, rtol=1e-5, atol=0)  # both squared in fp32
    for a, b in zip(plain[0], fused[0]):
        assert torch.isfinite(b).all()
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-4)


def test_fp16_step_scales_its_loss():
    try:
        autocast_for("fp16", "cpu")
    except UserError:
        pytest.skip("this torch has no fp16 autocast on the CPU")
    net = _net("resnet20")
    xs, y = _inputs(net)

    def finite_grads(impl):
        """Step (lr 0) until the scaler has found a scale without overflow, as it does in training."""
        stage, head = copy.deepcopy(net.stages[0]), copy.deepcopy(net.heads[0])
        params = list(stage.parameters()) + list(head.parameters())
        optimizer = torch.optim.SGD(params, lr=0.0)
        for _ in range(20):
            local_step(stage, head, optimizer, xs[0], y, (1.0, W), 0.0, precision="fp16", transport_impl=impl)
            if all(torch.isfinite(p.grad).all() for p in params):
                return [p.grad for p in params]
        raise AssertionError("the gradient scaler never found a finite step")

    fused, plain, reference = finite_grads("fused"), finite_grads("autograd"), _step(net, 0, xs[0], y)[0]
    for a, b in zip(plain, fused):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    norm = lambda grads: float(torch.cat([g.flatten() for g in grads]).norm())  # noqa: E731
    assert 0.8 < norm(fused) / norm(reference) < 1.25  # unscaled by the scaler's step: no 2**16 factor


def test_precision_and_checkpoint_flags_reach_the_config():
    args = build_parser().parse_args(["train", "--precision", "bf16", "--checkpoint-blocks"])
    cfg = config_from_args(args)
    assert cfg.precision == "bf16" and cfg.checkpoint_blocks is True
    assert TrainConfig().precision == "fp32" and TrainConfig().checkpoint_blocks == "auto"
    for text, value in (("off", False), ("auto", "auto"), ("on", True)):
        args = build_parser().parse_args(["train", "--checkpoint-blocks", text])
        assert config_from_args(args).checkpoint_blocks == value
    with pytest.raises(UserError, match="--precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(UserError, match="--checkpoint-blocks"):
        TrainConfig(checkpoint_blocks="yes")


def test_a_bf16_checkpointed_run_trains(synthetic_data, monkeypatch):
    """The plan keeps bf16 and checkpointing, the training steps run their blocks checkpointed under
    bf16 autocast, and the run still learns."""
    import edgetrgl.block_checkpoint as block_checkpoint

    seen = []  # per checkpointed call: autocast on, and its dtype
    plain = block_checkpoint.checkpoint

    def spy(fn, x, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return plain(fn, x, **kwargs)

    monkeypatch.setattr(block_checkpoint, "checkpoint", spy)
    result = train(tiny_config(precision="bf16", checkpoint_blocks=True), data=synthetic_data, out=None, quiet=True)
    plan = result.extra["plan"]
    assert plan["precision"] == "bf16" and plan["checkpoint_blocks"] is True
    steps = 2 * 512 // 64  # epochs * batches, for each of the 3 modules
    assert len(seen) >= 3 * steps and set(seen) == {(True, torch.bfloat16)}
    assert result.last_module["test_accuracy"] > 0.4  # fp32 reaches 0.63 here; chance is 0.1


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(6, 4, 5, 5), (6, 4, 7), (6, 4)])
def test_a_batchnorm_tail_moves_its_statistics_once_and_adds_the_transport_gradient(momentum, shape):
    """The BatchNorm closed form: the same output and running statistics as the module (a cumulative
    average too), and the gradient of ``loss + w * mean(r ** 2)``."""
    from edgetrgl.transport import inject_transport, residue_tail

    torch.manual_seed(0)
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(shape[1], momentum=momentum)
    nn.init.normal_(bn.weight), nn.init.normal_(bn.bias)
    h, g = torch.randn(shape), torch.randn(shape)
    plain_bn = copy.deepcopy(bn)
    for _ in range(2):  # twice: the cumulative average divides by the count
        h1, h2 = h.clone().requires_grad_(), h.clone().requires_grad_()
        r = plain_bn(h1)
        ((r * g).sum() + W * r.pow(2).mean()).backward()
        with inject_transport(W) as injection:
            fused = residue_tail(bn, h2)
        assert len(injection.tapped) == 1 and torch.equal(fused, r.detach())
        (fused * g).sum().backward()
        for a, b in [(h1.grad, h2.grad), (plain_bn.weight.grad, bn.weight.grad), (plain_bn.bias.grad, bn.bias.grad)]:
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(plain_bn.buffers(), bn.buffers()):
            assert torch.equal(a, b)


def test_a_step_whose_output_goes_nowhere_holds_no_chunk_beyond_its_backward():
    """``keep_output=False`` (the sequential regime's step): the same gradients, no output, and a
    lower peak with micro-batches, since no chunk's output waits for the last chunk."""
    net = _net("resnet20", size=32)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    kept, dropped = _step(net, 0, x, y, micro_batch=8), _step(net, 0, x, y, micro_batch=8, keep_output=False)
    assert dropped[3] is None and kept[3].shape[0] == 32
    for a, b in zip(kept[0], dropped[0]):
        assert torch.equal(a, b)

    def peak(keep: bool) -> int:
        stage, head = net.stages[0], net.heads[0]
        optimizer = torch.optim.SGD(list(stage.parameters()) + list(head.parameters()), lr=0.0, momentum=0.9)
        step = lambda: local_step(stage, head, optimizer, x, y, (1.0, W), 0.0, 8, keep_output=keep)  # noqa: E731
        step()
        return track_live_peak(step, stage, head, optimizer, x, y)

    assert peak(False) < peak(True)
