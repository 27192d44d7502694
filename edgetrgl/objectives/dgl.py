"""DGL: decoupled greedy learning (Belilovsky, Eickenberg, Oyallon, ICML 2020, "Decoupled Greedy
Learning of CNNs"; eugenium/DGL).

Greedy cross-entropy through the authors' auxiliary network, their default ``--type_aux mlp-sr``
(auxiliary_nets_study/models.py, ``auxillary_classifier2``): average-pool the features to a quarter
of their side, three 1x1 conv + BN + ReLU layers, average-pool to 2x2, then an MLP of three
Linear(4C -> 4C) + BN + ReLU layers and a Linear to the classes. The last module's net is their
final one (``n_lin=0, mlp_layers=2``): the pools and a two-layer MLP. The loss is VanGL's: what
differs is the auxiliary network. For features that are not ``(C, H, W)`` the package's head is used.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from edgetrgl.objectives import register
from edgetrgl.objectives.base import ModuleSpec, Objective


class DGLAuxNet(nn.Module):
    """``auxillary_classifier2`` without its CNN variant: spatial reduction, 1x1 convs, 2x2 pool, MLP."""

    def __init__(self, channels: int, side: int, num_classes: int, n_lin: int = 3, mlp_layers: int = 3) -> None:
        super().__init__()
        self.reduced = math.ceil(side / 4)
        self.convs = nn.Sequential(*[m for _ in range(n_lin) for m in (
            nn.Conv2d(channels, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())])
        width = 4 * channels  # 2x2 positions
        layers = [m for _ in range(mlp_layers) for m in (nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(True))]
        self.mlp = nn.Sequential(*layers, nn.Linear(width, num_classes))

    def forward(self, h_BCHW):
        out = self.convs(F.adaptive_avg_pool2d(h_BCHW, self.reduced))
        return self.mlp(F.adaptive_avg_pool2d(out, 2).flatten(1))


class DGL(Objective):
    name = "dgl"
    help = "greedy cross-entropy through DGL's auxiliary network (mlp-sr: 1x1 convs and a 3-layer MLP)"
    source = "Belilovsky et al., ICML 2020 (eugenium/DGL)"

    def classifier(self, spec: ModuleSpec, default) -> nn.Module:
        if len(spec.feature_shape) != 3:
            return default()
        channels, side = spec.feature_shape[0], max(spec.feature_shape[1:])
        if spec.last:
            return DGLAuxNet(channels, side, spec.num_classes, n_lin=0, mlp_layers=2)
        return DGLAuxNet(channels, side, spec.num_classes)


register(DGL())
