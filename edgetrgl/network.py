"""The one place a network is built: the model by name (or yours), split into modules with heads.

Training, the memory planner's fake-tensor estimates, ``load_run`` and the bench all build through
here, so the network that is estimated is the network that is trained.
"""

from __future__ import annotations

import copy

import torch

from edgetrgl.errors import UserError, first_line
from edgetrgl.models import BlockNet, create_model
from edgetrgl.modular import ModularNet, build_modular, orthogonal_init
from edgetrgl.objectives.base import attach_objective


def input_shape(spec) -> tuple[int, ...]:
    """One sample's input shape (``(C, H, W)`` for images, ``(D,)`` or ``(C, L)`` for features)."""
    return tuple(spec.input_shape)


def build_blocknet(network, spec, model: BlockNet | None = None) -> BlockNet:
    """The model before it is split: ``model`` (a deep copy, so it can be built many times) or the
    registry's ``network.model`` sized for the data.

    Args:
        network: a :class:`~edgetrgl.config.NetworkConfig` (or a TrainConfig: its fields are read flat).
        spec: the data's :class:`DataSpec` (channels, image size, classes).
        model: your own network, or None.
    """
    if model is not None:
        return copy.deepcopy(model)
    return create_model(network.model, in_channels=spec.in_channels, num_classes=spec.num_classes,
                        image_size=spec.image_size, **network.model_options)


def build_network(network, spec, model: BlockNet | None = None, *, num_modules: int | None = None,
                  boundaries: list[int] | None = None, seed: int | None = None,
                  method: str | None = None, objective_options: dict | None = None) -> ModularNet:
    """Split the model into ``num_modules`` modules (or at ``boundaries``) and attach the heads.

    Args:
        network: NetworkConfig (or TrainConfig): model, head style, init.
        spec: the data's DataSpec.
        model: your own BlockNet (used as is: not copied), or None for ``network.model``.
        num_modules: K (default ``network.modules``).
        boundaries: first block of modules 2..K (overrides ``num_modules``).
        seed: seed the weights' initialisation.
        method: the local objective whose heads the modules get (default ``network.method`` when
            ``network`` is a TrainConfig, else VanGL's plain heads): see :mod:`edgetrgl.objectives`.
        objective_options: the objective's options (``--objective-options``; default
            ``network.objective_options`` when ``network`` is a TrainConfig).

    Raises:
        UserError: the data's shape does not fit the model, or the objective does not fit it.
    """
    if seed is not None:
        torch.manual_seed(seed)
    blocknet = model if model is not None else build_blocknet(network, spec)
    sample = torch.zeros(2, *input_shape(spec))
    k = network.modules if num_modules is None else num_modules
    try:
        net = build_modular(blocknet, k, spec.num_classes, sample, boundaries=boundaries, head_style=network.head)
    except RuntimeError as exc:  # a shape mismatch surfaces in the probe forward pass
        raise UserError(f"{spec.describe_inputs()} ({spec.name}) do not fit the model {blocknet.name}: "
                        f"{first_line(exc)}") from None
    if network.init == "orthogonal":  # before the objective's own modules: they keep their authors' init
        orthogonal_init(net, network.init_gain)
    attach_objective(net, method or getattr(network, "method", "vangl"), sample, spec.num_classes,
                     getattr(spec, "mean", ()) or (), getattr(spec, "std", ()) or (),
                     getattr(network, "objective_options", None) if objective_options is None else objective_options)
    return net
