"""The TRGL module loss and its tau schedules (the paper's Eq. 10).

    loss_k = CE(F_k(T_k(x)), y) + (1 / (2 * tau_k)) * sum_m mean(r_m ** 2)

VanGL (plain greedy training) is the same loss without the transport term.
The method-of-multipliers variant divides the transport term by a growing multiplier:
    loss_k = CE + sum_m mean(r_m ** 2) / lambda_k,  lambda_k = 2 * tau_k,
and on every ``every``-th step of module k, lambda_k grows by ``step * CE(that step's batch)``
before that step's loss is formed. This follows the authors' code (skander-karkar/Block-wise,
``train_submodel`` / ``train_par`` in each experiment script: ``lml += uzt * target.item();
lmt = 1 / lml`` on iterations divisible by ``uzs``, then ``loss = target + lmt * transport``),
with their defaults ``--lambdaloss0 1 --lambdaloss0type increasing --lambdaloss0power 1``: module k
(0-based) starts at ``lambda_k = lml0 * k``, and its transport weight at ``1 / lambda_k``, or
``1 / lml0`` while lambda_k is 0 (module 0 before its first update). So the weights start at
1, 1, 1/2, 1/3, ... The cross-entropy keeps weight 1, so the multiplier never scales the
classifier's gradients (an earlier ``lambda_k * CE + transport`` did: an ever-growing step size).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F


def module_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    transport: torch.Tensor | None,
    ce_weight: float,
    transport_weight: float | Callable[[float], float],
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(loss, ce)``: ``ce_weight * CE + transport_weight * transport``; ``ce`` is detached.

    ``transport_weight`` may be a function of this batch's CE (a float): the multiplier variant's
    update step needs the CE before it can weigh the transport (see :meth:`TauSchedule.weights`).
    """
    ce = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    if callable(transport_weight):
        transport_weight = transport_weight(float(ce.detach()))  # a host sync, on update steps only
    loss = ce_weight * ce
    if transport is not None and transport_weight != 0.0:
        loss = loss + transport_weight * transport
    return loss, ce.detach()


def objective_loss(
    loss: torch.Tensor,
    transport: torch.Tensor | None,
    weight: float,
    transport_weight: float | Callable[[float], float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(weight * loss + transport_weight * transport, loss detached)`` for any local objective.

    As :func:`module_loss`, ``transport_weight`` may be a function of the objective's loss (the
    multiplier variant's update step; for VanGL and TRGL that loss is the cross-entropy).
    """
    value = loss.detach()
    if callable(transport_weight):
        transport_weight = transport_weight(float(value))
    total = weight * loss
    if transport is not None and transport_weight != 0.0:
        total = total + transport_weight * transport
    return total, value


LAMBDA0 = 1.0  # the authors' --lambdaloss0: module k's multiplier starts at LAMBDA0 * k


def starting_multiplier(k: int) -> float:
    """lambda_k at the start of module k's training (0-based k): the authors' ``lml0 * k``."""
    return LAMBDA0 * k


def multiplier_weight(lam: float) -> float:
    """The transport weight of multiplier ``lam``: ``1 / lam``; ``1 / LAMBDA0`` while it is 0 (as theirs)."""
    return 1.0 / lam if lam > 0 else 1.0 / LAMBDA0


@dataclass
class TauSchedule:
    """Per-module weights of the two loss terms.

    Args:
        kind: ``constant`` (tau_k = tau), ``double`` (tau/2 for the first half of the modules, tau
            for the second: the paper's default) or ``multiplier``.
        tau: the base tau.
        num_modules: K.
        transport: whether the transport term is on (False: weight 0 for every module, VanGL).
        step, every: the multiplier variant's h and s.
    """

    kind: str
    tau: float
    num_modules: int
    transport: bool = True
    step: float = 1.0
    every: int = 50
    multipliers: list[float] = field(default_factory=list)
    _counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.multipliers:
            self.multipliers = [starting_multiplier(k) for k in range(self.num_modules)]
        self._counts = [0] * self.num_modules

    def tau_k(self, k: int) -> float:
        """tau for module k (0-based)."""
        if self.kind == "multiplier":
            return 0.5 / multiplier_weight(self.multipliers[k])
        if self.kind == "double" and k < self.num_modules // 2:
            return self.tau / 2.0
        return self.tau

    def weights(self, k: int) -> tuple[float, float | Callable[[float], float]]:
        """``(ce_weight, transport_weight)`` for module k's next step.

        The CE weight is always 1; the transport weight is ``1 / (2 tau_k)`` (``1 / lambda_k`` for
        the multiplier variant, see :func:`multiplier_weight`). On a multiplier update step it is a
        function of that step's CE, ``ce -> 1 / (lambda_k + step * ce)``, because the authors' code
        updates lambda_k before forming that step's loss; :meth:`observe` then commits the same update.
        """
        if not self.transport:
            return 1.0, 0.0
        if self.kind == "multiplier" and (self._counts[k] + 1) % self.every == 0:
            lam = self.multipliers[k]
            return 1.0, lambda ce: multiplier_weight(lam + self.step * ce)
        if self.kind == "multiplier":
            return 1.0, multiplier_weight(self.multipliers[k])
        return 1.0, 1.0 / (2.0 * self.tau_k(k))

    def observe(self, k: int, ce: float) -> None:
        """Record one training step's CE; the multiplier variant updates lambda_k every ``every`` steps.

        The update uses that step's batch CE (label smoothing included, as the authors' criterion),
        the value :meth:`weights` already used for that step's loss.
        """
        if self.kind != "multiplier" or not self.transport:
            return
        self._counts[k] += 1
        if self._counts[k] % self.every == 0:
            self.multipliers[k] += self.step * ce

    def restart(self, k: int) -> None:
        """Module k starts a new round of training (a multi-lap lap): lambda_k back to its start
        (``LAMBDA0 * k``), its step count to 0, as the authors' code re-initialises both in every call
        of ``train_submodel``."""
        self.multipliers[k] = starting_multiplier(k)
        self._counts[k] = 0

    def state_dict(self) -> dict:
        return {"multipliers": list(self.multipliers), "counts": list(self._counts)}

    def load_state_dict(self, state: dict) -> None:
        self.multipliers = list(state["multipliers"])
        self._counts = list(state["counts"])
