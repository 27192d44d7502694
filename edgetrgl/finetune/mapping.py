"""Map a saved state dict onto a :class:`ModularNet`, key by key, naming what is loaded and skipped.

Keys are compared in a split-free form: ``stem.*``, ``blocks.<i>.*`` (i counts blocks across the
whole network) and ``heads.<k>.*``. So a run split into 4 modules can start a run split into 2:
the stem and blocks load; the heads load only when both splits are the same.

The network body (stem and blocks) must match exactly: every tensor present with the same shape,
and nothing extra. The first difference is a one-line error naming the key; nothing is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from edgetrgl.errors import UserError
from edgetrgl.finetune.sources import InitSource
from edgetrgl.modular import ModularNet, split_blocks

# BatchNorm's counter is absent from older checkpoints (torchvision's published weights among them)
_OPTIONAL = ("num_batches_tracked",)
TORCHVISION_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet50": (3, 4, 6, 3)}  # blocks in layer1..layer4
TORCHVISION_MODELS = tuple(TORCHVISION_LAYERS)


@dataclass
class InitPlan:
    """The full state dict to load into the network, and a report of where each part came from."""

    state: dict[str, torch.Tensor]
    source: str
    kind: str
    loaded: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # source key (or group) -> why

    def report(self) -> dict:
        return {"source": self.source, "kind": self.kind, "loaded_tensors": self.loaded, "skipped": self.skipped}

    def describe(self) -> str:
        skipped = "; ".join(f"skipped {k}: {why}" for k, why in self.skipped.items())
        return f"init from {self.source} ({self.kind}): loaded {self.loaded} tensors" + (f"; {skipped}" if skipped else "")


def split_free(key: str, ranges: list[tuple[int, int]]) -> str:
    """``stages.k.stem.x`` -> ``stem.x``; ``stages.k.blocks.j.x`` -> ``blocks.<a_k + j>.x``; heads unchanged."""
    match = re.match(r"^stages\.(\d+)\.(stem|blocks)\.(.*)$", key)
    if match is None:
        return key
    k, part, rest = int(match.group(1)), match.group(2), match.group(3)
    if part == "stem":
        return f"stem.{rest}"
    j, _, tail = rest.partition(".")
    return f"blocks.{ranges[k][0] + int(j)}.{tail}"


def _from_torchvision(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, str]]:
    """torchvision ResNet keys -> split-free keys; returns (mapped, names in the file, skipped)."""
    layers: dict[int, set[int]] = {}
    for key in state:
        match = re.match(r"^layer([1-4])\.(\d+)\.", key)
        if match:
            layers.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    offsets, start = {}, 0
    for layer in sorted(layers):
        offsets[layer] = start
        start += max(layers[layer]) + 1
    mapped, names = {}, {}
    skipped = {
        "conv1.*, bn1.*": "torchvision's 7x7 stride-2 ImageNet stem; this model's small-image stem (3x3, stride 1) "
                          "starts fresh, and so does its BatchNorm",
        "fc.*": "the ImageNet classifier; edgetrgl's module heads start fresh",
    }
    for key, tensor in state.items():
        match = re.match(r"^layer([1-4])\.(\d+)\.(.*)$", key)
        if match:
            new = f"blocks.{offsets[int(match.group(1))] + int(match.group(2))}.block.{match.group(3)}"
            mapped[new], names[new] = tensor, key
        elif not key.startswith(("conv1.", "bn1.", "fc.")):
            mapped[key], names[key] = tensor, key  # unknown: reported as unexpected below
    return mapped, names, skipped


def plan_init(net: ModularNet, source: InitSource, model_name: str) -> InitPlan:
    """Work out the state dict that initialises ``net`` from ``source``; change nothing.

    Args:
        net: the network to initialise (its keys and shapes are the target).
        source: what ``--init-from`` holds.
        model_name: the run's model, checked against the source's.

    Raises:
        UserError: a different model, or the first body key that is missing, has another shape or
            is not in the model.
    """
    ours = net.state_dict()
    target = {split_free(k, net.block_ranges): k for k in ours}
    plan = InitPlan(state=dict(ours), source=str(source.path), kind=source.kind)
    if source.kind == "torchvision":
        if model_name not in TORCHVISION_MODELS:
            raise UserError(f"--init-from {source.path} is a torchvision ResNet; it can start "
                            f"{' or '.join(TORCHVISION_MODELS)}, not {model_name}")
        theirs, names, plan.skipped = _from_torchvision(source.state)
        heads_match = False
    else:
        their_model = source.config.get("model")
        if their_model is not None and their_model != model_name:
            raise UserError(f"--init-from {source.path} holds a {their_model} run; this run trains {model_name}")
        ranges = _their_ranges(source, net.block_ranges[-1][1])
        theirs = {split_free(k, ranges): v for k, v in source.state.items()}
        names = {split_free(k, ranges): k for k in source.state}
        heads_match, why = _heads_match(net, ranges, theirs, target, ours)
        if not heads_match:
            plan.skipped["heads.*"] = why
    for free, key in target.items():
        if (free.startswith("heads.") and not heads_match) or (free.startswith("stem.") and source.kind == "torchvision"):
            continue  # starts fresh (reported in plan.skipped)
        if free not in theirs:
            if free.endswith(_OPTIONAL):
                continue
            raise UserError(f"--init-from {source.path} does not match {model_name}: it lacks {_their_name(free, source, model_name)} "
                            f"(the model's {key})")
        if theirs[free].shape != ours[key].shape:
            raise UserError(f"--init-from {source.path} does not match {model_name}: {names[free]} has shape "
                            f"{list(theirs[free].shape)}, the model's {key} {list(ours[key].shape)}")
        plan.state[key] = theirs[free].to(ours[key].dtype)
        plan.loaded += 1
    extra = [f for f in theirs if f not in target and not (f.startswith("heads.") and not heads_match)]
    if extra:
        raise UserError(f"--init-from {source.path} does not match {model_name}: it has {names[extra[0]]}, "
                        f"which the model lacks")
    return plan


def _their_ranges(source: InitSource, num_blocks: int) -> list[tuple[int, int]]:
    """The block ranges of the saved run's modules (its config; e2e is one module)."""
    cfg = source.config
    if not cfg:  # a bare ModularNet state dict: count its stages, assume equal depth
        stages = {int(k.split(".")[1]) for k in source.state if k.startswith("stages.")}
        return split_blocks(num_blocks, max(stages) + 1)
    modules = 1 if cfg.get("regime") == "e2e" else cfg.get("modules", 1)
    boundaries = None if cfg.get("regime") == "e2e" else cfg.get("boundaries")
    try:
        return split_blocks(num_blocks, modules, boundaries)
    except UserError:
        raise UserError(f"--init-from {source.path}: its split ({modules} modules) does not fit this model's "
                        f"{num_blocks} blocks") from None


def _heads_match(net, ranges, theirs, target, ours) -> tuple[bool, str]:
    if ranges != net.block_ranges:
        return False, f"the saved run splits the blocks as {ranges}, this run as {net.block_ranges}; heads start fresh"
    for free, key in target.items():
        if free.startswith("heads.") and free in theirs and theirs[free].shape != ours[key].shape:
            return False, f"{free} has shape {list(theirs[free].shape)}, this run's {list(ours[key].shape)} (another " \
                          f"number of classes?); heads start fresh"
    return True, ""


def _their_name(free: str, source: InitSource, model_name: str) -> str:
    """The name a key has in the source file (torchvision: ``layerL.i.*``)."""
    match = re.match(r"^blocks\.(\d+)\.block\.(.*)$", free)
    if source.kind != "torchvision" or match is None:
        return free
    index = int(match.group(1))
    for layer, count in enumerate(TORCHVISION_LAYERS[model_name], start=1):
        if index < count:
            return f"layer{layer}.{index}.{match.group(2)}"
        index -= count
    return free
