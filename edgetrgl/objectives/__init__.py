"""The local-objective registry: what each module's local loss is.

An objective says which auxiliary modules a module needs (its classifier, a decoder, a
projection), how the module's loss is formed from its output, the input images, the labels and
its position k of K, and which named terms it logs. The transport term (TRGL)
is not part of an objective: it is a regulariser added by the step on top of any objective,
``--transport auto|on|off`` (auto: the objective's default; only ``trgl`` defaults to on).

Adding one is one file and one ``register(...)`` call:

    from edgetrgl.objectives import LocalLoss, Objective, register

    class Mine(Objective):
        name, help, source = "mine", "CE through the head, halved", "me"
        def loss(self, head, out, y, *, image, label_smoothing):
            logits = head(out)
            ce = torch.nn.functional.cross_entropy(logits, y)
            return LocalLoss(0.5 * ce, logits, {"ce": ce.detach()})

    register(Mine())

Everything downstream (the optimizer, checkpoints, the fake-tensor estimates, the bench) sees an
objective's auxiliary modules because they live in the module's head (:class:`ObjectiveHead`),
which trains, moves and saves with it; the exported classifier is the head's ``classifier`` alone.
"""

from __future__ import annotations

from edgetrgl.errors import UserError
from edgetrgl.objectives.base import LocalLoss, ModuleSpec, Objective, ObjectiveHead, classifier_of
from edgetrgl.registry import Registry

__all__ = ["LocalLoss", "ModuleSpec", "Objective", "ObjectiveHead", "classifier_of", "get_objective",
           "objective_names", "objective_of", "objectives", "register", "unregister", "uses_transport",
           "TRANSPORT_CHOICES"]

TRANSPORT_CHOICES = ("auto", "on", "off")


def _load_builtin() -> None:
    """The objective files of this folder, one import each (each file registers its own objectives)."""
    from edgetrgl.objectives import vangl, trgl, infopro, dgl, predsim  # noqa: F401  (in --method's order)


_REGISTRY: Registry[Objective] = Registry("--method", _load_builtin)


# the registry's own methods are the public API: register(objective), unregister(name),
# get_objective(name) (an unknown name: a UserError listing the registered ones), the names and entries
register = _REGISTRY.register
unregister = _REGISTRY.remove
get_objective = _REGISTRY.get
objective_names = _REGISTRY.names
objectives = _REGISTRY.values


def objective_of(head) -> Objective | None:
    """The objective a head trains with; None for a plain head (VanGL's cross-entropy)."""
    return get_objective(head.objective).configure(head.options) if isinstance(head, ObjectiveHead) else None


def uses_transport(method: str, transport: str = "auto") -> bool:
    """Whether the transport term is on: ``--transport on/off``, or the objective's default (auto).

    Raises:
        UserError: unknown method or transport choice.
    """
    if transport not in TRANSPORT_CHOICES:
        raise UserError(f"--transport must be one of {', '.join(TRANSPORT_CHOICES)}; got {transport!r}")
    default = get_objective(method).transport
    return default if transport == "auto" else transport == "on"
