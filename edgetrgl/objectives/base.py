"""What an objective is, and the head that carries its auxiliary modules.

A module's head is where the local loss lives: for VanGL and TRGL it is the network's own head
(plain), for the others an :class:`ObjectiveHead` holding the classifier (what evaluation, early exit
and export use) and the objective's auxiliary modules (a decoder, a projection, a 3x3 conv). So the
auxiliary modules train in the module's optimizer, move with the module, sit in its checkpoint and
count in every fake-tensor estimate and work count (they run inside ``local_step``), with no other
code knowing about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

import torch
from torch import nn

from edgetrgl.errors import UserError


@dataclass(frozen=True)
class ModuleSpec:
    """What an objective sees of module k when it builds that module's heads.

    Attributes:
        k: the module's index, 0-based; ``num_modules`` is K.
        feature_shape: the module's output for one sample (no batch dimension).
        input_shape: one input sample of the network (``(C, H, W)`` for images).
        num_classes: label range.
        mean, std: the data's per-channel normalisation (0..1 pixel scale), for objectives that
            reconstruct the image; empty when the data has none.
    """

    k: int
    num_modules: int
    feature_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def last(self) -> bool:
        return self.k == self.num_modules - 1


class LocalLoss(NamedTuple):
    """One module's local loss: the loss to minimise (fp32, differentiable), the classifier's logits
    (for the training accuracy) and the named terms it logs (detached 0-d tensors)."""

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, torch.Tensor]


class Objective:
    """A local objective. Subclass it, set the class attributes, override what differs, register it.

    Attributes:
        name: what ``--method`` calls it.
        help: one line for ``--help``.
        source: where it comes from (paper, authors' code).
        transport: the transport term's default (``--transport auto``): True for TRGL only.
        plain_heads: keep the network's heads as they are (VanGL, TRGL: no auxiliary modules).
        needs_image: the loss needs the network's input images (InfoPro's reconstruction).
    """

    name: str = ""
    help: str = ""
    source: str = ""
    transport: bool = False
    plain_heads: bool = False
    needs_image: bool = False
    options: tuple[str, ...] = ()  # what ``objective_options`` may set (``configure``)

    def configure(self, options: Mapping[str, Any]) -> "Objective":
        """This objective with ``options`` (``--objective-options``) applied: ``self`` when there are none.

        Raises:
            UserError: an option the objective does not take.
        """
        if not options:
            return self
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = f"takes {', '.join(self.options)}" if self.options else "takes no options"
            raise UserError(f"--objective-options: {self.name} {takes}; got {', '.join(unknown)}")
        return self._with_options(dict(options))

    def _with_options(self, options: dict[str, Any]) -> "Objective":
        """A configured copy; objectives with ``options`` override this."""
        raise NotImplementedError(f"{type(self).__name__} lists options but does not apply them")

    def classifier(self, spec: ModuleSpec, default: Callable[[], nn.Module]) -> nn.Module:
        """Module k's classifier; ``default()`` builds the package's (or the user's) head."""
        return default()

    def aux_modules(self, spec: ModuleSpec) -> dict[str, nn.Module]:
        """Module k's auxiliary modules beside the classifier (trained with it, never exported)."""
        return {}

    def loss(self, head: "ObjectiveHead", out: torch.Tensor, y: torch.Tensor, *, image: torch.Tensor | None,
             label_smoothing: float) -> LocalLoss:
        """Module k's loss from its output ``out``, the labels ``y`` and (``needs_image``) the input
        images; ``head`` holds the classifier, the auxiliary modules, k and K."""
        logits = head.classifier(out)
        ce = nn.functional.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        return LocalLoss(ce, logits, {"ce": ce.detach()})


class ObjectiveHead(nn.Module):
    """Module k's classifier and its objective's auxiliary modules; calling it is the classifier.

    Attributes:
        classifier: the head evaluation, early exit and export use.
        aux: the auxiliary modules (``nn.ModuleDict``), trained with the module, never exported.
        objective: the objective's registered name; ``options`` its run's ``objective_options``.
        k, num_modules: the module's position (objectives whose weights move with depth).
    """

    def __init__(self, objective: str, spec: ModuleSpec, classifier: nn.Module, aux: dict[str, nn.Module],
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.objective, self.k, self.num_modules = objective, spec.k, spec.num_modules
        self.options = dict(options or {})  # the run's objective_options: objective_of() applies them
        self.classifier = classifier
        self.aux = nn.ModuleDict(aux)
        channels = spec.input_shape[0] if spec.input_shape else 1
        # not saved: they follow the data, and the module's device
        self.register_buffer("image_mean", _per_channel(spec.mean, channels, 0.0), persistent=False)
        self.register_buffer("image_std", _per_channel(spec.std, channels, 1.0), persistent=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def restore_image(self, image_BCHW: torch.Tensor) -> torch.Tensor:
        """Undo the data's normalisation: pixels on the 0..1 scale (InfoPro's reconstruction target)."""
        shape = (1, -1) + (1,) * (image_BCHW.dim() - 2)
        return (image_BCHW * self.image_std.view(shape) + self.image_mean.view(shape)).clamp(0.0, 1.0)


def _per_channel(values, channels: int, fill: float) -> torch.Tensor:
    values = tuple(values) or (fill,)
    if len(values) != channels:
        values = (values[0],) * channels
    return torch.tensor(values, dtype=torch.float32)


def classifier_of(head: nn.Module) -> nn.Module:
    """The part of a head that classifies (an ObjectiveHead's ``classifier``; a plain head itself)."""
    return head.classifier if isinstance(head, ObjectiveHead) else head


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` forward; its gradient times ``scale`` backward (0: detached)."""
    if scale == 1.0:
        return x
    if scale == 0.0:
        return x.detach()
    return _ScaleGrad.apply(x, scale)


@torch.no_grad()
def attach_objective(net: nn.Module, method: str, sample_input: torch.Tensor, num_classes: int,
                     mean: tuple = (), std: tuple = (), options: Mapping[str, Any] | None = None) -> nn.Module:
    """Give every module of ``net`` the heads of objective ``method`` (in place; returns ``net``).

    Plain-head objectives (VanGL, TRGL) leave the network's heads as they are. The others wrap each
    head in an :class:`ObjectiveHead` with the objective's classifier and auxiliary modules.

    Raises:
        UserError: unknown method, an option it does not take, or an objective that does not fit the
            features (from the objective).
    """
    from edgetrgl.objectives import get_objective

    objective = get_objective(method).configure(options or {})
    if objective.plain_heads or len(net.stages) == 1:  # one module (e2e): the network's own head and CE
        return net
    shapes, x = [], sample_input
    for stage in net.stages:
        was_training = stage.training
        stage.eval()  # shape probing must not move BatchNorm running statistics
        x = stage(x)
        stage.train(was_training)
        shapes.append(tuple(x.shape[1:]))
    K = len(net.stages)
    heads = []
    for k, (head, shape) in enumerate(zip(net.heads, shapes)):
        spec = ModuleSpec(k, K, shape, tuple(sample_input.shape[1:]), num_classes, tuple(mean), tuple(std))
        classifier = objective.classifier(spec, lambda head=head: head)
        heads.append(ObjectiveHead(objective.name, spec, classifier, objective.aux_modules(spec), options))
    net.heads = nn.ModuleList(heads)
    return net
