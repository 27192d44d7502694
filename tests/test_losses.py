"""The TRGL loss against a hand computation, and the tau schedules."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgetrgl.blocks import ResidualBlock, run_block
from edgetrgl.losses import TauSchedule, module_loss
from edgetrgl.modular import Stage


class Affine(ResidualBlock):
    """out = x + r with r = a * x: residue known in closed form."""

    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward_residues(self, x):
        r = self.a * x
        return x + r, [r]


def test_module_loss_matches_hand_computation():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5)
    stage = Stage([Affine(0.5), Affine(-0.25)])
    out, transport = stage.forward_transport(x)
    r1 = 0.5 * x
    r2 = -0.25 * (x + r1)
    expected_transport = r1.pow(2).mean() + r2.pow(2).mean()
    assert torch.allclose(transport, expected_transport)
    logits, y, tau = torch.randn(4, 10), torch.tensor([1, 2, 3, 4]), 0.5
    loss, ce = module_loss(logits, y, transport, 1.0, 1.0 / (2 * tau))
    expected = F.cross_entropy(logits, y) + expected_transport / (2 * tau)
    assert torch.allclose(loss, expected)
    assert torch.allclose(ce, F.cross_entropy(logits, y))


def test_label_smoothing_is_passed_to_cross_entropy():
    logits, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    loss, _ = module_loss(logits, y, None, 1.0, 0.0, label_smoothing=0.1)
    assert torch.allclose(loss, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_transport_kinds_residual_displacement_none():
    x = torch.randn(2, 4, 8, 8)
    _, cost, kind = run_block(Affine(0.1), x)
    assert kind == "residual"
    same = nn.Conv2d(4, 4, 3, padding=1)
    out, cost, kind = run_block(same, x)
    assert kind == "displacement" and torch.allclose(cost, (out - x).pow(2).mean())
    _, cost, kind = run_block(nn.Conv2d(4, 8, 3, padding=1), x)
    assert kind == "none" and cost is None


def test_non_differentiable_transport_keeps_no_graph():
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    _, cost, _ = run_block(Affine(0.1), x, differentiable=False)
    assert not cost.requires_grad


def test_tau_schedules():
    double = TauSchedule("double", tau=1.0, num_modules=4)
    assert [double.tau_k(k) for k in range(4)] == [0.5, 0.5, 1.0, 1.0]
    assert double.weights(0) == (1.0, 1.0)  # 1 / (2 * 0.5)
    assert double.weights(3) == (1.0, 0.5)
    constant = TauSchedule("constant", tau=2.0, num_modules=3)
    assert {constant.tau_k(k) for k in range(3)} == {2.0}
    vangl = TauSchedule("double", tau=1.0, num_modules=4, transport=False)
    assert vangl.weights(0) == (1.0, 0.0)


def _authors_starting_weights(num_modules: int, lml0: float = 1.0, power: float = 1.0) -> list[float]:
    """``lmts`` as the TRGL authors' ``train_par`` builds it for ``--lambdaloss0type increasing``
    (skander-karkar/Block-wise, resnet110-4modules-stl10.py), written out from their expression:
    ``[1 / (lml0 * i ** power) if i > 0 else 1 / lml0 for i in range(nmodules)]``."""
    return [1 / (lml0 * i ** power) if i > 0 else 1 / lml0 for i in range(num_modules)]


def test_multiplier_starts_as_the_authors_lambda0_times_k():
    sched = TauSchedule("multiplier", tau=1.0, num_modules=5, step=1.0, every=50)
    assert sched.multipliers == [0.0, 1.0, 2.0, 3.0, 4.0]  # their lmls: lml0 * i
    starting = [sched.weights(k)[1] for k in range(5)]
    assert starting == pytest.approx([1.0, 1.0, 1 / 2, 1 / 3, 1 / 4])
    assert starting == pytest.approx(_authors_starting_weights(5))
    assert [sched.tau_k(k) for k in range(5)] == pytest.approx([0.5, 0.5, 1.0, 1.5, 2.0])  # lambda_k = 2 tau_k


def test_multiplier_grows_by_h_times_ce_every_s_steps():
    sched = TauSchedule("multiplier", tau=1.0, num_modules=3, step=2.0, every=3)
    assert sched.weights(2) == (1.0, 0.5)  # lambda_2 starts at 2
    for ce in (0.9, 0.8):
        sched.observe(2, ce)
    assert sched.multipliers[2] == 2.0
    sched.observe(2, 0.7)  # third step: lambda += h * CE of the current batch
    assert sched.multipliers[2] == pytest.approx(2.0 + 2.0 * 0.7)
    assert sched.multipliers[:2] == [0.0, 1.0]
    assert sched.tau_k(2) == pytest.approx(sched.multipliers[2] / 2)
    for ce in (0.9, 0.8, 0.7):
        sched.observe(0, ce)
    assert sched.multipliers[0] == pytest.approx(2.0 * 0.7)  # module 0: from 0, as theirs
    assert sched.weights(0)[1] == pytest.approx(1 / 1.4)
    state = sched.state_dict()
    other = TauSchedule("multiplier", tau=1.0, num_modules=3, step=2.0, every=3)
    other.load_state_dict(state)
    assert other.multipliers == sched.multipliers


def test_multiplier_matches_hand_computation():
    """CE + transport / lambda; lambda = k + h * CE on every s-th step, applied to that step's loss."""
    h, s = 2.0, 3
    sched = TauSchedule("multiplier", tau=5.0, num_modules=2, step=h, every=s)
    ces = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    transport = torch.tensor(0.3)
    losses, lambdas = [], []
    for ce in ces:
        ce_weight, tw = sched.weights(1)
        tw = tw(ce) if callable(tw) else tw
        losses.append(ce_weight * ce + tw * float(transport))
        sched.observe(1, ce)
        lambdas.append(sched.multipliers[1])
    lam3 = 1.0 + h * 0.7  # module 1 starts at 1; step 3 updates with its own CE: 2.4
    lam6 = lam3 + h * 0.4  # step 6: 3.2
    assert lambdas == pytest.approx([1.0, 1.0, lam3, lam3, lam3, lam6])
    assert losses == pytest.approx([0.9 + 0.3, 0.8 + 0.3, 0.7 + 0.3 / lam3, 0.6 + 0.3 / lam3, 0.5 + 0.3 / lam3,
                                    0.4 + 0.3 / lam6])
    assert sched.tau_k(1) == pytest.approx(lam6 / 2)  # lambda_k = 2 tau_k


def test_multiplier_loss_and_gradient_scale():
    """The multiplier only divides the transport term: the CE gradient keeps its scale (weight 1)."""
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    target = torch.randint(0, 4, (6,))
    transport = torch.tensor(0.5, requires_grad=True)
    sched = TauSchedule("multiplier", tau=1.0, num_modules=1, step=1.0, every=1)
    sched.multipliers[0] = 20.0  # as after many updates
    loss, ce = module_loss(logits, target, transport, *sched.weights(0))
    lam = 20.0 + float(ce)  # every=1: this step updates lambda with its own CE first
    assert float(loss.detach()) == pytest.approx(float(ce) + 0.5 / lam, rel=1e-6)
    loss.backward()
    plain = logits.detach().clone().requires_grad_(True)
    F.cross_entropy(plain, target).backward()
    assert torch.allclose(logits.grad, plain.grad)  # not multiplied by lambda
    assert float(transport.grad) == pytest.approx(1.0 / lam)
    sched.observe(0, float(ce))
    assert sched.multipliers[0] == pytest.approx(lam)


def test_multiplier_restarts_for_a_new_lap():
    sched = TauSchedule("multiplier", tau=1.0, num_modules=3, step=1.0, every=1)
    sched.observe(2, 0.5)
    assert sched.multipliers[2] == 2.5
    sched.restart(2)
    assert sched.multipliers[2] == 2.0 and sched.state_dict()["counts"][2] == 0  # back to lml0 * k
