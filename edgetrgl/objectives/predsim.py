"""PredSim (Nokland, Eidnes, ICML 2019, "Training Neural Networks with Local Error Signals";
anokland/local-loss, ``LocalLossBlockConv`` / ``LocalLossBlockLinear`` in train.py).

    loss_k = (1 - beta) * CE(decoder_y(avgpool(h_k)), y) + beta * MSE(S(g(h_k)), S(onehot(y)))

with beta = 0.99 (their ``--beta``), as their code builds each hidden layer's local loss:

* g is a bias-free 3x3 conv for conv features (their ``conv_loss``) and a bias-free
  ``Linear(D, D)`` for flat (D,) features (their ``linear_loss``).
* S is their adjusted cosine similarity matrix of the batch: for conv features each channel is
  first summarised by its standard deviation over positions (their default, unless
  ``--no-similarity-std``); rows are centred, L2-normalised, multiplied, and clamped to [-1, 1].
* ``decoder_y``, the prediction head, average-pools conv features with a kernel doubled (height,
  then width) until at most ``DIM_IN_DECODER`` values remain, then one Linear layer whose weight
  starts at zero (their ``decoder_y.weight.data.zero_()``); flat features go straight to it.
  2048 is the ``--dim-in-decoder`` of their CIFAR commands (their default is 4096, their
  Fashion-MNIST VGG8b commands use 1024 or 4096).

The last module is their network's output layer, trained by cross-entropy through the network's
classifier (the package's head here) with their weight ``1 - beta`` = 0.01 (``loss *= (1 -
args.beta)`` in their ``train``). Their optimizer is Adam (lr 5e-4, ``configs/predsim.toml``),
which normalises the gradient's scale away; under SGD the same 0.01 makes the output layer and
every prediction head take steps a hundred times smaller than plain cross-entropy would.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.errors import UserError
from edgetrgl.objectives import register
from edgetrgl.objectives.base import LocalLoss, ModuleSpec, Objective, ObjectiveHead

BETA = 0.99
DIM_IN_DECODER = 2048


def similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    """The batch's adjusted cosine similarity matrix (B x B)."""
    if x.dim() == 4:
        x = x.flatten(2).std(dim=2) if x.size(1) > 3 and x.size(2) > 1 else x.flatten(1)
    x = x.flatten(1)
    centred = x - x.mean(dim=1, keepdim=True)
    unit = centred / (1e-8 + centred.pow(2).sum(dim=1, keepdim=True).sqrt())
    return (unit @ unit.T).clamp(-1, 1)


class PredictionHead(nn.Module):
    """Their ``decoder_y``: average pool (kernel doubled, height then width, until at most
    ``DIM_IN_DECODER`` values remain; padded so the output sizes round up, as theirs), flatten, and a
    Linear layer whose weight starts at zero (the bias keeps torch's default, as theirs)."""

    def __init__(self, shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.pool = None
        if len(shape) == 3:
            channels, height, width = shape
            kh = kw = 1
            out_h, out_w = height, width
            while channels * out_h * out_w > DIM_IN_DECODER and kh < height:
                kh *= 2
                out_h = math.ceil(height / kh)
                if channels * out_h * out_w > DIM_IN_DECODER:
                    kw *= 2
                    out_w = math.ceil(width / kw)
            if kh > 1 or kw > 1:
                padding = ((kh * (out_h - height // kh)) // 2, (kw * (out_w - width // kw)) // 2)
                self.pool = nn.AvgPool2d((kh, kw), padding=padding)
            shape = (channels, out_h, out_w)
        self.fc = nn.Linear(math.prod(shape), num_classes)
        nn.init.zeros_(self.fc.weight)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            h = self.pool(h)
        return self.fc(h.flatten(1))


class PredSim(Objective):
    name = "predsim"
    help = "(1 - beta) prediction loss + beta similarity-matching loss, beta 0.99 (their optimizer: Adam)"
    source = "Nokland & Eidnes, ICML 2019 (anokland/local-loss)"

    def __init__(self, beta: float = BETA) -> None:
        self.beta = beta

    def classifier(self, spec: ModuleSpec, default) -> nn.Module:
        if spec.last:
            return default()
        if len(spec.feature_shape) not in (1, 3):
            raise UserError(f"--method predsim takes (C, H, W) or (D,) features; module {spec.k + 1} "
                            f"outputs {spec.feature_shape}")
        return PredictionHead(spec.feature_shape, spec.num_classes)

    def aux_modules(self, spec: ModuleSpec) -> dict[str, nn.Module]:
        """g, the map before the similarity matrix: their ``conv_loss`` or ``linear_loss``."""
        if spec.last:
            return {}
        width = spec.feature_shape[0]
        if len(spec.feature_shape) == 3:
            return {"similarity_conv": nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False)}
        return {"similarity_linear": nn.Linear(width, width, bias=False)}

    def loss(self, head: ObjectiveHead, out, y, *, image, label_smoothing) -> LocalLoss:
        if head.k == head.num_modules - 1:  # the output layer: their (1 - beta) * cross-entropy
            local = super().loss(head, out, y, image=image, label_smoothing=label_smoothing)
            return LocalLoss((1 - self.beta) * local.loss, local.logits, local.terms)
        logits = head.classifier(out)
        prediction = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        g = head.aux["similarity_conv"] if "similarity_conv" in head.aux else head.aux["similarity_linear"]
        features = g(out).float()
        target = similarity_matrix(F.one_hot(y, logits.shape[1]).float())
        similarity = F.mse_loss(similarity_matrix(features), target)
        loss = (1 - self.beta) * prediction + self.beta * similarity
        return LocalLoss(loss, logits, {"ce": prediction.detach(), "similarity": similarity.detach()})


register(PredSim())
