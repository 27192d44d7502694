"""Each auxiliary net and each loss weight as its authors' code has it.

The expected values below are read from the authors' repositories and written out here, with the
file they come from, so that a drift in ours fails a test:
- TRGL, skander-karkar/Block-wise: the ``apc`` pool of the 1CNN head in each experiment script;
- DGL, eugenium/DGL, auxiliary_nets_study/models.py ``auxillary_classifier2`` (mlp-sr);
- InfoPro, blackfeather-wang/InfoPro-Pytorch, Experiments on CIFAR-SVHN-STL10: the README's
  ``--ixx_1 --ixy_1 --ixx_2 --ixy_2`` commands, networks/auxiliary_nets.py and the init loop of
  networks/resnet.py;
- PredSim, anokland/local-loss, train.py: ``LocalLossBlockConv`` / ``LocalLossBlockLinear`` and the
  ``--beta`` weighting of the train loop.
The multiplier schedule's starting weights are pinned in tests/test_losses.py.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.api import build_network
from edgetrgl.config import TrainConfig
from edgetrgl.data import load_dataset
from edgetrgl.errors import UserError
from edgetrgl.heads import ConvHead, TRGLConvHead, make_head
from edgetrgl.objectives import ModuleSpec, ObjectiveHead, get_objective
from edgetrgl.objectives.dgl import DGLAuxNet
from edgetrgl.objectives.infopro import Decoder, aux_net_1c2f, module_weights, supervised_contrastive
from edgetrgl.objectives.predsim import similarity_matrix
from edgetrgl.step import make_optimizer
from tests.conftest import tiny_config


def _layer_types(seq: nn.Sequential) -> list[type]:
    return [type(m) for m in seq]


# ---- TRGL: the 1CNN head with the authors' AvgPool2d(apc) ------------------------------------------

def _stl10(nfilters, factor, apc, side=96):
    return [((c, side // f, side // f), a) for c, f, a in zip(nfilters, factor, apc)]


# (feature shape, apc) per module, from each script's ``nfilters``, ``factor``, encoder and ``apc``
AUTHORS_APC = {
    "resnet110-2modules-stl10": _stl10([32, 64], [2, 4], [16, 8]),
    "resnet110-2modules-stl10-balanced": _stl10([16, 64], [1, 4], [16, 8]),
    "resnet110-4modules-stl10": _stl10([16, 32, 64, 64], [1, 2, 4, 4], [16, 16, 8, 8]),
    "resnet110-4modules-stl10-balanced": _stl10([16, 16, 32, 64], [1, 1, 2, 4], [16, 16, 16, 8]),
    "resnet110-8modules-stl10": _stl10([16, 16, 32, 32, 32, 64, 64, 64], [1, 1, 2, 2, 2, 4, 4, 4],
                                       [16] * 5 + [8] * 3),
    "resnet110-16modules-stl10": _stl10([16] * 4 + [32] * 6 + [64] * 6, [1] * 4 + [2] * 6 + [4] * 6,
                                        [16] * 10 + [8] * 6),
    # ResNet-101/152 (bottleneck: 4 * nfilters channels), CIFAR-100 at 32 px, stem stride 1
    "resnet101-2modules-cifar100": _stl10([1024, 2048], [4, 8], [8, 4], side=32),
    # Tiny ImageNet at 64 px, stem stride 2: a 32 px encoding
    "resnet101-4modules-tinyimagenet": _stl10([512, 1024, 1024, 2048], [2, 4, 4, 8], [8, 8, 8, 4], side=32),
}


@pytest.mark.parametrize("script", sorted(AUTHORS_APC))
def test_trgl_head_is_the_authors_1cnn_with_their_apc(script):
    for shape, apc in AUTHORS_APC[script]:
        with torch.device("meta"):  # structure only: no time spent filling 2048-channel convs
            head = make_head("conv", shape, 10, style="trgl")
        assert isinstance(head, TRGLConvHead)
        body = head.body
        assert _layer_types(body) == [nn.Conv2d, nn.ReLU, nn.AvgPool2d, nn.BatchNorm2d, nn.Flatten, nn.Linear]
        conv, pool, linear = body[0], body[2], body[5]
        channels, height, width = shape
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding, conv.bias) == \
            (channels, channels, (3, 3), (1, 1), None)
        assert pool.kernel_size == (apc, apc) and pool.stride == (apc, apc) and pool.padding == 0
        # their create_classifier: featuresize = int(nfilters * (H / apc) * (W / apc))
        assert linear.in_features == int(channels * (height / apc) * (width / apc))
        assert linear.out_features == 10


def test_trgl_head_runs_on_stl10_maps_and_the_default_head_still_pools_to_2x2():
    head = make_head("conv", (16, 96, 96), 10, style="trgl").train()
    seen = []
    head.body[2].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    assert head(torch.randn(2, 16, 96, 96)).shape == (2, 10)
    assert seen == [(2, 16, 6, 6)]  # 6x6 maps: 36 C values into the linear layer
    default = make_head("conv", (16, 96, 96), 10)
    assert isinstance(default, ConvHead) and default.body[-1].in_features == 16 * 4


def test_head_trgl_reaches_every_module_of_a_built_network():
    cfg = tiny_config(head="trgl")
    _, _, spec = load_dataset("synthetic", seed=0)
    net = build_network(cfg, spec)
    assert all(isinstance(head, TRGLConvHead) for head in net.heads)
    with pytest.raises(UserError, match="--head"):
        TrainConfig(head="adaptive")


# ---- DGL: auxillary_classifier2, mlp-sr -----------------------------------------------------------

@pytest.mark.parametrize("side", [32, 16, 8, 7])
def test_dgl_aux_net_pools_to_a_quarter_side_then_2x2_as_the_authors(side):
    channels, classes = 8, 5
    net = DGLAuxNet(channels, side, classes).train()
    assert _layer_types(net.convs) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 3
    assert all(c.kernel_size == (1, 1) and c.bias is None and c.in_channels == c.out_channels == channels
               for c in net.convs if isinstance(c, nn.Conv2d))
    assert _layer_types(net.mlp) == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 3 + [nn.Linear]
    assert [(m.in_features, m.out_features) for m in net.mlp if isinstance(m, nn.Linear)] == \
        [(4 * channels, 4 * channels)] * 3 + [(4 * channels, classes)]
    seen = []
    net.convs[0].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[2:])))
    net.mlp[0].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[1:])))
    assert net(torch.randn(4, channels, side, side)).shape == (4, classes)
    quarter = math.ceil(side / 4)  # their F.adaptive_avg_pool2d(out, (ceil(in_size / 4), ...))
    assert seen == [(quarter, quarter), (4 * channels,)]


def test_dgl_last_module_is_their_final_net_pools_and_a_two_layer_mlp():
    net = DGLAuxNet(8, 8, 5, n_lin=0, mlp_layers=2)
    assert len(net.convs) == 0
    assert _layer_types(net.mlp) == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]


# ---- InfoPro ---------------------------------------------------------------------------------------

# (ixx_1, ixy_1, ixx_2, ixy_2) of their README's ResNet-110 CIFAR-10 commands, --local_loss_mode contrast
INFOPRO_COMMANDS = {2: (5, 0.5, 0, 0), 4: (1, 0, 0, 1), 8: (5, 0, 0, 1), 16: (5, 0, 0.5, 1)}
INFOPRO_BALANCED_K4 = {"ixx_1": 5.0, "ixy_1": 0.0, "ixx_2": 5.0, "ixy_2": 0.1}  # their --balanced_memory, K=4


def _their_weights(k, K, ixx_1, ixy_1, ixx_2, ixy_2):
    """Their ResNet.forward: ``ratio = local_module_i / (local_module_num - 2) if local_module_num > 2
    else 0``, ``ixx_r = ixx_1 * (1 - ratio) + ixx_2 * ratio``, likewise ``ixy_r``."""
    ratio = k / (K - 2) if K > 2 else 0
    return ixx_1 * (1 - ratio) + ixx_2 * ratio, ixy_1 * (1 - ratio) + ixy_2 * ratio


@pytest.mark.parametrize("K", sorted(INFOPRO_COMMANDS))
def test_infopro_weights_by_depth_are_the_published_commands(K):
    for k in range(K - 1):
        assert module_weights(k, K) == pytest.approx(_their_weights(k, K, *INFOPRO_COMMANDS[K]))


def test_infopro_weights_at_module_2_of_4_keep_ixx_and_ixy_apart():
    # with the K=4 command both are 0.5 at k=1, so a swap would not show: their balanced-memory K=4
    # command has ixx 5 and ixy 0.05 there
    assert module_weights(1, 4, overrides=INFOPRO_BALANCED_K4) == pytest.approx((5.0, 0.05))
    objective = get_objective("infopro-c").configure(INFOPRO_BALANCED_K4)
    torch.manual_seed(0)
    spec = ModuleSpec(1, 4, (16, 6, 6), (3, 12, 12), 5)
    head = ObjectiveHead("infopro-c", spec, make_head("conv", spec.feature_shape, 5), objective.aux_modules(spec),
                         INFOPRO_BALANCED_K4).train()
    h, x, y = torch.randn(8, 16, 6, 6), torch.rand(8, 3, 12, 12), torch.arange(8) % 5
    local = objective.loss(head, h, y, image=x, label_smoothing=0.0)
    reconstruction, contrast, ce = (local.terms[name] for name in ("reconstruction", "contrast", "probe_ce"))
    assert float(local.loss.detach()) == pytest.approx(float(5.0 * reconstruction + 0.05 * contrast + ce), rel=1e-5)
    with torch.no_grad():
        assert float(contrast) == pytest.approx(float(supervised_contrastive(head.aux["projection"](h), y)), rel=1e-5)


def _he_std(conv: nn.Conv2d) -> float:
    """Their init: ``m.weight.data.normal_(0, math.sqrt(2. / n))``, n = k_h * k_w * out_channels."""
    return math.sqrt(2.0 / (conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels))


def test_infopro_decoder_is_theirs_and_he_initialised():
    torch.manual_seed(0)
    decoder = Decoder(64, 3)
    body = decoder.body
    assert _layer_types(body) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]  # their Sigmoid: in the BCE
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding, c.bias is not None)
            for c in (body[0], body[3])] == [(64, 12, (3, 3), (1, 1), True), (12, 3, (3, 3), (1, 1), True)]
    for conv in (body[0], body[3]):  # torch's default would be ~0.02 and ~0.06: far outside 15%
        assert float(conv.weight.detach().std()) == pytest.approx(_he_std(conv), rel=0.15)
        assert abs(float(conv.weight.detach().mean())) < 0.2 * _he_std(conv)
    assert torch.equal(body[1].weight, torch.ones(12)) and torch.equal(body[1].bias, torch.zeros(12))


@pytest.mark.parametrize("channels, out_channels, stride", [(16, 32, 2), (32, 64, 2), (64, 64, 1)])
def test_infopro_c_projection_is_their_1c2f_and_he_initialised(channels, out_channels, stride):
    torch.manual_seed(0)
    net = aux_net_1c2f(channels, 128)
    assert _layer_types(net) == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Flatten,
                                 nn.Linear, nn.ReLU, nn.Linear]
    conv = net[0]
    assert (conv.out_channels, conv.stride, conv.bias) == (out_channels, (stride, stride), None)
    assert [(m.in_features, m.out_features) for m in (net[5], net[7])] == [(out_channels, 128), (128, 128)]
    assert float(conv.weight.detach().std()) == pytest.approx(_he_std(conv), rel=0.15)


# ---- PredSim ---------------------------------------------------------------------------------------

def _their_decoder_input(channels: int, side: int, dim_in_decoder: int = 2048) -> tuple[int, int, int]:
    """``(ks_h, ks_w, dim_in_decoder)`` as LocalLossBlockConv.__init__ resolves its average pool."""
    ks_h = ks_w = 1
    out_h = out_w = side
    dim = channels * out_h * out_w
    while dim > dim_in_decoder and ks_h < side:
        ks_h *= 2
        out_h = math.ceil(side / ks_h)
        dim = channels * out_h * out_w
        if dim > dim_in_decoder:
            ks_w *= 2
            out_w = math.ceil(side / ks_w)
            dim = channels * out_h * out_w
    return ks_h, ks_w, dim


def _predsim_head(k, K, features, classes=5):
    torch.manual_seed(0)
    spec = ModuleSpec(k, K, features, (1, 28, 28), classes)
    objective = get_objective("predsim")
    return ObjectiveHead("predsim", spec, objective.classifier(spec, lambda: make_head("conv", features, classes)),
                         objective.aux_modules(spec)).train()


# conv features and what their loop gives: (ks_h, ks_w, values into decoder_y)
PREDSIM_POOLS = [((64, 6, 6), (2, 1, 1152)), ((128, 28, 28), (8, 8, 2048)), ((256, 14, 14), (8, 4, 2048)),
                 ((16, 7, 7), (1, 1, 784)), ((512, 3, 3), (2, 2, 2048))]


@pytest.mark.parametrize("features, expected", PREDSIM_POOLS)
def test_predsim_conv_heads_are_their_decoder_y_and_conv_loss(features, expected):
    assert _their_decoder_input(features[0], features[1]) == expected  # the table is their rule
    ks_h, ks_w, values = expected
    head = _predsim_head(0, 4, features)
    predict = head.classifier
    assert predict.fc.in_features == values
    assert torch.count_nonzero(predict.fc.weight) == 0  # their decoder_y.weight.data.zero_()
    if ks_h == ks_w == 1:
        assert predict.pool is None
    else:
        assert isinstance(predict.pool, nn.AvgPool2d) and predict.pool.kernel_size == (ks_h, ks_w)
    assert predict(torch.randn(2, *features)).shape == (2, 5)
    g = head.aux["similarity_conv"]
    assert (type(g), g.in_channels, g.out_channels, g.kernel_size, g.padding, g.bias) == \
        (nn.Conv2d, features[0], features[0], (3, 3), (1, 1), None)


BETA = 0.99  # their --beta default


def test_predsim_flat_features_pass_a_bias_free_linear_before_the_similarity():
    head = _predsim_head(0, 3, (32,))
    g = head.aux["similarity_linear"]
    assert (type(g), g.in_features, g.out_features, g.bias) == (nn.Linear, 32, 32, None)  # their linear_loss
    assert head.classifier.pool is None and head.classifier.fc.in_features == 32
    assert torch.count_nonzero(head.classifier.fc.weight) == 0
    nn.init.normal_(head.classifier.fc.weight)  # so that the prediction term has a gradient to compare
    h, y = torch.randn(8, 32, requires_grad=True), torch.arange(8) % 5
    local = get_objective("predsim").loss(head, h, y, image=None, label_smoothing=0.0)
    sim = F.mse_loss(similarity_matrix(F.linear(h, g.weight)), similarity_matrix(F.one_hot(y, 5).float()))
    ref = (1 - BETA) * F.cross_entropy(head.classifier.fc(h), y) + BETA * sim
    assert torch.allclose(local.loss, ref, atol=1e-6)
    grads = torch.autograd.grad(local.loss, (h, g.weight), retain_graph=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, torch.autograd.grad(ref, (h, g.weight))))


def test_predsim_loss_weights_are_theirs_hidden_and_output():
    hidden = _predsim_head(0, 3, (8, 6, 6))
    nn.init.normal_(hidden.classifier.fc.weight)
    h, y = torch.randn(8, 8, 6, 6), torch.arange(8) % 5
    local = get_objective("predsim").loss(hidden, h, y, image=None, label_smoothing=0.0)
    assert float(local.loss.detach()) == pytest.approx(float((1 - BETA) * local.terms["ce"] + BETA * local.terms["similarity"]),
                                              rel=1e-6)
    output = _predsim_head(2, 3, (8, 6, 6))  # their train loop: loss = CE(output); loss *= (1 - beta)
    local = get_objective("predsim").loss(output, h, y, image=None, label_smoothing=0.0)
    assert float(local.loss.detach()) == pytest.approx(0.01 * float(F.cross_entropy(output.classifier(h), y).detach()), rel=1e-6)


@pytest.mark.parametrize("method", ["predsim", "infopro"])
def test_orthogonal_init_leaves_the_objectives_own_init(method):
    cfg = tiny_config(method=method, init="orthogonal", init_gain=0.1)
    _, _, spec = load_dataset("synthetic", seed=0)
    net = build_network(cfg, spec)
    stage_conv = next(m for m in net.stages[0].modules() if isinstance(m, nn.Conv2d))
    flat = stage_conv.weight.flatten(1)  # orthogonal rows (or columns), scaled by the gain
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    assert torch.allclose(gram, 0.01 * torch.eye(len(gram)), atol=1e-5)  # the network got the paper's init
    head = net.heads[0]
    if method == "predsim":
        assert torch.count_nonzero(head.classifier.fc.weight) == 0  # their zero decoder_y, not orthogonal
    else:
        conv = head.aux["decoder"].body[0]
        assert float(conv.weight.detach().std()) == pytest.approx(_he_std(conv), rel=0.25)  # He, not gain 0.1


# ---- the optimizer ---------------------------------------------------------------------------------

def test_make_optimizer_builds_sgd_or_adam_and_the_config_refuses_others():
    params = [nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer("sgd", params, 0.1, momentum=0.9, weight_decay=1e-4)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9
    adam = make_optimizer("adam", params, 5e-4, weight_decay=0.0)
    assert type(adam) is torch.optim.Adam and adam.defaults["lr"] == 5e-4
    with pytest.raises(UserError, match="--optimizer"):
        TrainConfig(optimizer="rmsprop")


def test_a_run_with_optimizer_adam_steps_with_adam(tmp_path):
    from edgetrgl.api import train

    train(tiny_config(optimizer="adam", regime="parallel", epochs=1, lr=5e-4, modules=2,
                      dataset_options={"num_train": 128, "num_test": 32}), out=tmp_path / "run", quiet=True)
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    states = [state for optimizer in checkpoint["optimizers"] for state in optimizer["state"].values()]
    assert states and all({"exp_avg", "exp_avg_sq"} <= set(state) for state in states)  # Adam's two buffers
