"""InfoPro and InfoPro-C (Wang, Ni, Song, Yang, Huang, ICLR 2021, "Revisiting Locally Supervised
Learning: an Alternative to End-to-end Training"; blackfeather-wang/InfoPro-Pytorch).

Module k < K-1 minimises

    ixx_k * BCE(decoder(upsample(h_k)), x_0..1)  +  ixy_k * task(h_k, y)

The reconstruction keeps information about the image in early modules. The decoder follows the
authors' ``Decoder``: bilinear upsampling of the features to the image size (align_corners), then
Conv3x3(C->12), BN, ReLU, Conv3x3(12->C_in) and a sigmoid, scored by BCE against the un-normalised image.
Here the sigmoid and the BCE are fused (``binary_cross_entropy_with_logits``: the same function, and
safe under autocast). The task term is cross-entropy through the module's classifier
(``infopro``), or the supervised contrastive loss at temperature 0.07 on a 128-d projection by the
authors' "1c2f" auxiliary net (Conv3x3 stride 2 to 2C channels, or C -> C stride 1 from 64
channels, BN, ReLU, global pool, Linear to 128, ReLU, Linear; ``infopro-c``, their
``--local_loss_mode contrast``). The classifier is the package's head (DGL's "1CNN", the one every
method here has), not their 1c2f net with a cross-entropy output: trained for one epoch, that net
stayed near chance on the tiny test set (VanGL with it instead of the 1CNN: 10-15% against 56-65%)
and cost InfoPro 18 points on the default setting (77.3% best module, seed 0).

The weights move linearly over modules 0..K-2, as their ``ixx_1/ixy_1/ixx_2/ixy_2`` options:
``r = k / (K - 2)`` (0 when K = 2), ``ixx_k = ixx_1 (1 - r) + ixx_2 r``, likewise ``ixy_k``. The
defaults are their published ResNet-110 CIFAR-10 commands (Experiments on CIFAR-SVHN-STL10/README.md):
K=2: 5, 0.5, 0, 0; K=4: 1, 0, 0, 1; K=8: 5, 0, 0, 1; K=16: 5, 0, 0.5, 1 (ixx_1, ixy_1, ixx_2, ixy_2);
another K takes the nearest of these, and ``objective_options`` (``--objective-options '{ixx_1 = 5}'``)
set any of the four for every K. Those commands are all ``--local_loss_mode contrast`` (their
default): they published no weights for the cross-entropy variant, so ``infopro`` (CE) using the
same table is our choice, not theirs; tune them with ``--objective-options`` for that variant.

Every conv of the decoder and the projection is He-initialised as the authors' network does it for
all its convs (``normal_(0, sqrt(2 / (k * k * out_channels)))``: Kaiming normal, fan-out, ReLU);
BatchNorm starts at weight 1, bias 0; biases and Linear layers keep torch's defaults, as theirs. The last module is trained with plain cross-entropy through
the network's own classifier, as theirs: in edgetrgl that is the last module's head, the package's
(their ResNet's is global pooling and a linear layer; ours is the head every method's last module has).

Two choices of ours, since edgetrgl reports every module's test accuracy:
* ``infopro``: the classifier receives the full cross-entropy gradient while the module receives
  ``ixy_k`` times it (a gradient scale between them), so a module with ``ixy_k = 0`` still has a
  trained classifier; the module's gradient is exactly the authors' weighted sum.
* ``infopro-c``: the contrastive projection trains the module; the classifier (the package's head)
  is a probe trained by cross-entropy on the detached features, so it never changes the module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.errors import UserError
from edgetrgl.objectives import register
from edgetrgl.objectives.base import LocalLoss, ModuleSpec, Objective, ObjectiveHead, scale_grad

# (ixx_1, ixy_1, ixx_2, ixy_2) per K: the authors' ResNet-110 CIFAR-10 commands
PUBLISHED_WEIGHTS = {2: (5.0, 0.5, 0.0, 0.0), 4: (1.0, 0.0, 0.0, 1.0), 8: (5.0, 0.0, 0.0, 1.0), 16: (5.0, 0.0, 0.5, 1.0)}
FEATURE_DIM = 128  # their --aux_net_feature_dim
TEMPERATURE = 0.07  # their SupConLoss temperature (and base temperature)


WEIGHT_NAMES = ("ixx_1", "ixy_1", "ixx_2", "ixy_2")


def module_weights(k: int, num_modules: int, weights: dict | None = None,
                   overrides: dict[str, float] | None = None) -> tuple[float, float]:
    """``(ixx_k, ixy_k)`` of module k < K-1: linear in k between the (ixx_1, ixy_1) and (ixx_2, ixy_2)
    ends, taken from the table row of the nearest K, with ``overrides`` (``--objective-options``) on top."""
    table = weights or PUBLISHED_WEIGHTS
    nearest = min(table, key=lambda n: (abs(math.log(n) - math.log(max(num_modules, 2))), n))
    ends = {**dict(zip(WEIGHT_NAMES, table[nearest])), **(overrides or {})}
    ixx_1, ixy_1, ixx_2, ixy_2 = (ends[name] for name in WEIGHT_NAMES)
    ratio = k / (num_modules - 2) if num_modules > 2 else 0.0
    return ixx_1 * (1 - ratio) + ixx_2 * ratio, ixy_1 * (1 - ratio) + ixy_2 * ratio


def he_init_convs(module: nn.Module) -> nn.Module:
    """The authors' init of every Conv2d in ``module`` (their ResNet's ``__init__`` loop): weights
    ``N(0, 2 / (k_h * k_w * out_channels))``, biases untouched; BatchNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class Decoder(nn.Module):
    """Upsample the features to the image size, two 3x3 convs: logits of the image's pixels."""

    def __init__(self, channels: int, image_channels: int, width: int = 12) -> None:
        super().__init__()
        self.body = he_init_convs(nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, image_channels, kernel_size=3, padding=1),
        ))

    def forward(self, h_BCHW: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.body(F.interpolate(h_BCHW, size=size, mode="bilinear", align_corners=True))


def aux_net_1c2f(channels: int, outputs: int, hidden: int = FEATURE_DIM) -> nn.Sequential:
    """The authors' "1c2f" auxiliary net: one conv, two linear layers."""
    wide = channels >= 64  # their 64-channel variant keeps the width and the resolution
    out_channels, stride = (channels, 1) if wide else (2 * channels, 2)
    return he_init_convs(nn.Sequential(
        nn.Conv2d(channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(out_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, outputs),
    ))


def supervised_contrastive(z_BD: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) with one view: z is L2-normalised here; each sample's positives are
    the other samples of its class; anchors without a positive contribute 0."""
    z = F.normalize(z_BD.float(), dim=1)
    logits = z @ z.T / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = ~torch.eye(len(y), dtype=torch.bool, device=z.device)
    positive = (y[:, None] == y[None, :]) & not_self
    log_prob = logits - torch.log((logits.exp() * not_self).sum(dim=1, keepdim=True))
    mean_positive = (positive * log_prob).sum(dim=1) / positive.sum(dim=1).clamp(min=1)
    return -mean_positive.mean()  # the temperature / base temperature factor is 1 at their defaults


class InfoPro(Objective):
    """InfoPro (``contrast=False``) or InfoPro-C (``contrast=True``); ``weights`` overrides the
    published (ixx_1, ixy_1, ixx_2, ixy_2) table, keyed by K."""

    needs_image = True
    source = "Wang et al., ICLR 2021 (blackfeather-wang/InfoPro-Pytorch)"
    options = WEIGHT_NAMES  # their --ixx_1 --ixy_1 --ixx_2 --ixy_2, for every K

    def __init__(self, name: str = "infopro", contrast: bool = False, weights: dict | None = None,
                 overrides: dict[str, float] | None = None) -> None:
        self.name, self.contrast, self.weights, self.overrides = name, contrast, weights, overrides or {}
        self.help = (("supervised contrastive loss on a projection" if contrast else "cross-entropy through the "
                      "authors' aux classifier") + " + image reconstruction by a decoder, weighted by depth")

    def _with_options(self, options: dict) -> "InfoPro":
        for name, value in options.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"--objective-options: {self.name}'s {name} must be a number >= 0, got {value!r}")
        return InfoPro(self.name, self.contrast, self.weights, {k: float(v) for k, v in options.items()})

    def _check(self, spec: ModuleSpec) -> None:
        if len(spec.feature_shape) != 3 or len(spec.input_shape) != 3:
            raise UserError(f"--method {self.name} reconstructs images from conv features: module {spec.k + 1} "
                            f"outputs {spec.feature_shape} from inputs {spec.input_shape}")

    def classifier(self, spec: ModuleSpec, default) -> nn.Module:
        self._check(spec)
        return default()

    def aux_modules(self, spec: ModuleSpec) -> dict[str, nn.Module]:
        if spec.last:
            return {}
        aux = {"decoder": Decoder(spec.feature_shape[0], spec.input_shape[0])}
        if self.contrast:
            aux["projection"] = aux_net_1c2f(spec.feature_shape[0], FEATURE_DIM)
        return aux

    def loss(self, head: ObjectiveHead, out, y, *, image, label_smoothing) -> LocalLoss:
        if head.k == head.num_modules - 1:
            return super().loss(head, out, y, image=image, label_smoothing=label_smoothing)
        if image is None:
            raise ValueError(f"{self.name} needs the input images")
        ixx, ixy = module_weights(head.k, head.num_modules, self.weights, self.overrides)
        pixels = head.aux["decoder"](out, tuple(image.shape[-2:]))
        reconstruction = F.binary_cross_entropy_with_logits(pixels.float(), head.restore_image(image.float()))
        if self.contrast:
            task = supervised_contrastive(head.aux["projection"](out), y)
            logits = head.classifier(out.detach())  # a probe: it reads the module, never trains it
            ce = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            loss = ixx * reconstruction + ixy * task + ce
            terms = {"reconstruction": reconstruction.detach(), "contrast": task.detach(), "probe_ce": ce.detach()}
        else:
            logits = head.classifier(scale_grad(out, ixy))  # the module gets ixy * the CE's gradient
            ce = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
            loss = ixx * reconstruction + ce
            terms = {"reconstruction": reconstruction.detach(), "ce": ce.detach()}
        return LocalLoss(loss, logits, terms)


register(InfoPro())
register(InfoPro("infopro-c", contrast=True))
