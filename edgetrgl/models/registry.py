"""Models looked up by name: ``create_model("resnet56")``, ``list_models("resnet*")``.

A builder is a function ``builder(in_channels, num_classes, image_size, **options) -> BlockNet``.
Its keyword-only parameters are the options a user may pass; the registry checks them against the
builder's signature so that a typo ends as one :class:`UserError` line, not a ``TypeError``.
"""

from __future__ import annotations

import fnmatch
import inspect
from typing import Callable

from edgetrgl.errors import UserError
from edgetrgl.models.base import BlockNet

Builder = Callable[..., BlockNet]

_REGISTRY: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder`` under ``name``.

    The first line of the builder's docstring becomes its :func:`model_info` description.

    Raises:
        ValueError: if ``name`` is already registered (a programming error, not a user error).
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_models(pattern: str = "*") -> list[str]:
    """Return the sorted names of registered models that match the fnmatch ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def _get_builder(name: str) -> Builder:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


def _option_names(builder: Builder) -> list[str] | None:
    """Keyword options the builder accepts, or None if it takes ``**options`` (anything goes)."""
    params = list(inspect.signature(builder).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def model_info(name: str) -> str:
    """Return a one-line description of model ``name`` and the options it accepts.

    Raises:
        UserError: if ``name`` is not registered.
    """
    builder = _get_builder(name)
    doc = (inspect.getdoc(builder) or "").strip()
    summary = doc.splitlines()[0] if doc else ""
    options = _option_names(builder)
    if options:
        summary += f" (options: {', '.join(options)})"
    return summary


def create_model(
    name: str, *, in_channels: int = 3, num_classes: int = 10, image_size: int = 32, **kwargs
) -> BlockNet:
    """Build registered model ``name`` as a :class:`BlockNet` (stem + blocks, no classifier).

    Args:
        name: registry name, see :func:`list_models`.
        in_channels: input image channels (1 or 3 usually).
        num_classes: number of classes; heads are built elsewhere, builders only receive it.
        image_size: side of the (square) input image in pixels.
        **kwargs: builder options, e.g. ``width=4`` for a tiny test flavour.

    Returns:
        The BlockNet; ``extra["create_args"]`` holds the arguments needed to rebuild it.

    Raises:
        UserError: unknown name, an option the builder does not accept, or a bad value.
    """
    builder = _get_builder(name)
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes), ("image_size", image_size)):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{arg} must be a positive integer, got {value!r}")
    allowed = _option_names(builder)
    if allowed is not None:
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            accepted = ", ".join(allowed) if allowed else "none"
            raise UserError(f"model {name!r} does not accept option(s) {', '.join(unknown)}; accepted: {accepted}")
    net = builder(in_channels, num_classes, image_size, **kwargs)
    net.name = name
    # Recorded so a checkpoint can rebuild exactly the same network.
    net.extra["create_args"] = dict(in_channels=in_channels, num_classes=num_classes, image_size=image_size, **kwargs)
    return net
