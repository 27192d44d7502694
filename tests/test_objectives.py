"""The local-objective registry and its objectives: each loss and its gradients against a small
hand-written reference, a toy objective registered from outside the package, the transport term on
any objective, and the CLI's one-line error for an unknown method."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgetrgl
from edgetrgl.cli.main import main
from edgetrgl.errors import UserError
from edgetrgl.objectives import (LocalLoss, ModuleSpec, Objective, ObjectiveHead, get_objective, objective_names,
                                 register, unregister, uses_transport)
from edgetrgl.objectives.dgl import DGLAuxNet
from edgetrgl.objectives.infopro import module_weights, supervised_contrastive
from edgetrgl.objectives.predsim import similarity_matrix
from edgetrgl.api import train
from tests.conftest import tiny_config

BUILTIN = ("trgl", "vangl", "infopro", "infopro-c", "dgl", "predsim")
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _head(method: str, k: int, K: int, features=(8, 6, 6), image=(3, 12, 12), classes=5) -> ObjectiveHead:
    torch.manual_seed(0)
    spec = ModuleSpec(k, K, features, image, classes, MEAN, STD)
    objective = get_objective(method)
    head = ObjectiveHead(method, spec, objective.classifier(spec, lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(features), classes))), objective.aux_modules(spec))
    return head.train()


def _grads(loss: torch.Tensor, *tensors) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True))


def _batch(seed=1, B=8, features=(8, 6, 6), image=(3, 12, 12), classes=5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, *features, generator=g, requires_grad=True)
    x = torch.randn(B, *image, generator=g)
    y = torch.arange(B) % classes  # every class that appears has a positive pair for SupCon
    return h, x, y


# ---- the registry ---------------------------------------------------------------------------------
def test_builtin_objectives_are_registered_and_unknown_names_list_them():
    assert set(BUILTIN) <= set(objective_names())
    with pytest.raises(UserError, match="--method must be one of .*infopro-c.*predsim"):
        get_objective("nope")


def test_transport_is_a_regulariser_of_any_objective():
    assert uses_transport("trgl") and not uses_transport("vangl") and not uses_transport("infopro")
    assert uses_transport("infopro", "on") and uses_transport("vangl", "on") and not uses_transport("trgl", "off")
    with pytest.raises(UserError, match="--transport"):
        uses_transport("trgl", "maybe")


class HalfCE(Objective):
    """A toy objective: half the cross-entropy, through a head of its own plus an unused aux module."""

    name, help, source = "toy-half-ce", "half the cross-entropy", "tests"

    def aux_modules(self, spec):
        return {"scale": nn.Linear(1, 1)}

    def loss(self, head, out, y, *, image, label_smoothing):
        logits = head.classifier(out)
        ce = F.cross_entropy(logits.float(), y)
        return LocalLoss(0.5 * ce + 0.0 * head.aux["scale"].weight.sum(), logits, {"half_ce": (0.5 * ce).detach()})


@pytest.fixture
def toy_objective():
    objective = register(HalfCE())
    yield objective
    unregister(objective.name)
    assert objective.name not in objective_names()


def test_a_toy_objective_registered_outside_the_package_trains_through_edgetrgl_train(toy_objective, synthetic_data,
                                                                                      tmp_path):
    cfg = tiny_config(regime="parallel", method=toy_objective.name, epochs=3)
    result = edgetrgl.train(cfg, data=synthetic_data, out=tmp_path / "run", quiet=True)
    assert result.last_module["test_accuracy"] > 0.4
    assert all(isinstance(h, ObjectiveHead) and "scale" in h.aux for h in result.net.heads)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    assert epochs and all("half_ce" in r["terms"] for r in epochs)  # the objective's own terms are logged
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["objective"] == {"method": toy_objective.name, "transport": False, "transport_option": "auto"}


# ---- each objective against a hand-written reference ----------------------------------------------
def test_vangl_and_trgl_keep_the_plain_heads(synthetic_data):
    for method in ("vangl", "trgl"):
        net = edgetrgl.build_network(tiny_config(method=method), synthetic_data[2])
        assert not any(isinstance(h, ObjectiveHead) for h in net.heads)


def _bce_reference(logits, target):
    p = torch.sigmoid(logits)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()


def _decoder_reference(head, h, size):
    up = F.interpolate(h, size=size, mode="bilinear", align_corners=True)
    conv1, bn, _, conv2 = head.aux["decoder"].body
    z = F.conv2d(up, conv1.weight, conv1.bias, padding=1)
    z = F.relu(F.batch_norm(z, None, None, bn.weight, bn.bias, training=True, eps=bn.eps))
    return F.conv2d(z, conv2.weight, conv2.bias, padding=1)


def test_infopro_weights_move_linearly_as_the_authors_options():
    # K=4, the authors' ResNet-110 command: ixx 1 -> 0, ixy 0 -> 1 over modules 0..K-2
    assert [module_weights(k, 4) for k in range(3)] == [(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)]
    assert module_weights(0, 2) == (5.0, 0.5)
    assert module_weights(3, 8) == pytest.approx((5 * (1 - 3 / 6), 3 / 6))


def test_objective_options_set_infopro_weights_for_every_k():
    assert module_weights(0, 4, overrides={"ixx_1": 5.0}) == (5.0, 0.0)  # the rest: the K=4 row
    assert module_weights(2, 8, overrides={"ixx_1": 2.0, "ixy_1": 1.0, "ixx_2": 0.0, "ixy_2": 1.0}) == \
        pytest.approx((2.0 * (1 - 2 / 6), 1.0))


def test_objective_options_reach_the_loss_and_the_run_folder(tmp_path):
    """`--objective-options` with ixx = 0 everywhere: InfoPro's loss is then its cross-entropy alone
    (the reconstruction term is still logged), and config.json records the options."""
    common = ["train", "--dataset", "synthetic", "--model", "resnet20", "--model-options", "{width = 4}",
              "--modules", "3", "--epochs", "1", "--method", "infopro", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "off"), "--objective-options",
                 "{ixx_1 = 0, ixy_1 = 1, ixx_2 = 0, ixy_2 = 1}"]) == 0
    assert main([*common, "--out", str(tmp_path / "default")]) == 0

    def first_module(run):
        records = [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return next(r for r in records if r["event"] == "epoch" and r["module"] == 1)

    off, default = first_module("off"), first_module("default")
    assert off["loss"] == pytest.approx(off["terms"]["ce"]) and off["terms"]["reconstruction"] > 0
    assert default["loss"] == pytest.approx(default["terms"]["ce"] + 1.0 * default["terms"]["reconstruction"])
    saved = json.loads((tmp_path / "off" / "config.json").read_text())
    assert saved["config"]["objective_options"] == {"ixx_1": 0, "ixy_1": 1, "ixx_2": 0, "ixy_2": 1}


@pytest.mark.parametrize("method, options, message", [
    ("vangl", "{ixx_1 = 1}", "--objective-options: vangl takes no options; got ixx_1"),
    ("infopro", "{nope = 1}", "--objective-options: infopro takes ixx_1, ixy_1, ixx_2, ixy_2; got nope"),
    ("infopro-c", "{ixy_2 = -1}", "--objective-options: infopro-c's ixy_2 must be a number >= 0, got -1"),
])
def test_an_option_the_objective_does_not_take_is_one_line(method, options, message, capsys, tmp_path):
    code = main(["train", "--dataset", "synthetic", "--method", method, "--objective-options", options,
                 "--out", str(tmp_path / "run")])
    assert code == 2 and capsys.readouterr().err.strip().splitlines() == [f"edgetrgl: error: {message}"]
    assert not (tmp_path / "run").exists()


def test_infopro_loss_and_gradients_equal_a_hand_written_reference():
    head = _head("infopro", k=1, K=4)  # ixx = ixy = 0.5
    h, x, y = _batch()
    local = get_objective("infopro").loss(head, h, y, image=x, label_smoothing=0.0)
    target = (x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)).clamp(0, 1)
    rec = _bce_reference(_decoder_reference(head, h, (12, 12)), target)
    logits = head.classifier(h)
    ce = -F.log_softmax(logits, dim=1)[torch.arange(len(y)), y].mean()
    assert torch.allclose(local.terms["reconstruction"], rec.detach(), atol=1e-6)
    assert torch.allclose(local.terms["ce"], ce.detach(), atol=1e-6)
    params = list(head.classifier.parameters()) + list(head.aux.parameters())
    ours = _grads(local.loss, h, *params)
    # the module: the authors' 0.5 rec + 0.5 CE; the classifier: the full CE; the decoder: 0.5 rec
    expected = [_grads(0.5 * rec + 0.5 * ce, h)[0], *_grads(ce, *head.classifier.parameters()),
                *_grads(0.5 * rec, *head.aux.parameters())]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, expected))


def _supcon_reference(z, y, t=0.07):
    z = F.normalize(z, dim=1)
    total = 0.0
    for i in range(len(y)):
        others = [j for j in range(len(y)) if j != i]
        denominator = torch.logsumexp(torch.stack([z[i] @ z[j] / t for j in others]), dim=0)
        positives = [j for j in others if y[j] == y[i]]
        if positives:
            total = total - sum(z[i] @ z[p] / t - denominator for p in positives) / len(positives)
    return total / len(y)


def test_infopro_c_contrast_term_equals_supcon_and_its_probe_never_trains_the_module():
    z = torch.randn(8, 16, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1, 2, 2, 3, 0])  # class 3 has no positive: it adds 0
    ours, ref = supervised_contrastive(z, y), _supcon_reference(z, y)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(*(_grads(v, z)[0] for v in (ours, ref)), atol=1e-5)
    head = _head("infopro-c", k=0, K=4)  # ixx 1, ixy 0: only the reconstruction reaches the module
    h, x, y = _batch()
    local = get_objective("infopro-c").loss(head, h, y, image=x, label_smoothing=0.0)
    target = (x * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)).clamp(0, 1)
    rec = _bce_reference(_decoder_reference(head, h, (12, 12)), target)
    assert torch.allclose(_grads(local.loss, h)[0], _grads(rec, h)[0], atol=1e-6)
    assert set(local.terms) == {"reconstruction", "contrast", "probe_ce"}
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(local.loss, *head.classifier.parameters()))


@pytest.mark.parametrize("method, weight", [("infopro", 1.0), ("infopro-c", 1.0), ("predsim", 0.01)])
def test_the_last_module_is_plain_cross_entropy_through_the_network_classifier(method, weight):
    head = _head(method, k=3, K=4)  # the authors train their network's output layer with CE alone
    h, x, y = _batch()
    assert len(head.aux) == 0
    local = get_objective(method).loss(head, h, y, image=None, label_smoothing=0.0)
    # PredSim's authors scale it by 1 - beta (``loss *= (1 - args.beta)`` in their train loop)
    assert torch.allclose(local.loss, weight * F.cross_entropy(head.classifier(h), y))


def test_dgl_aux_net_is_the_authors_mlp_sr_and_its_loss_is_cross_entropy():
    net = DGLAuxNet(8, 6, 5).train()
    h, _, y = _batch()
    z = F.adaptive_avg_pool2d(h, math.ceil(6 / 4))  # their spatial reduction, then 3 x (1x1 conv, BN, ReLU)
    for i in range(3):
        conv, bn = net.convs[3 * i], net.convs[3 * i + 1]
        z = F.relu(F.batch_norm(F.conv2d(z, conv.weight), None, None, bn.weight, bn.bias, training=True))
    z = F.adaptive_avg_pool2d(z, 2).flatten(1)
    for i in range(3):
        fc, bn = net.mlp[3 * i], net.mlp[3 * i + 1]
        z = F.relu(F.batch_norm(F.linear(z, fc.weight, fc.bias), None, None, bn.weight, bn.bias, training=True))
    logits = F.linear(z, net.mlp[-1].weight, net.mlp[-1].bias)
    assert torch.allclose(net(h), logits, atol=1e-5)
    head = _head("dgl", k=0, K=4)
    local = get_objective("dgl").loss(head, h, y, image=None, label_smoothing=0.0)
    ref = F.cross_entropy(head.classifier(h), y)
    assert torch.allclose(local.loss, ref)
    assert torch.allclose(_grads(local.loss, h)[0], _grads(ref, h)[0])
    assert isinstance(_head("dgl", k=3, K=4).classifier, DGLAuxNet)  # the last module: their final net


def _similarity_reference(x):
    if x.dim() == 4:
        flat = x.flatten(2)
        x = ((flat - flat.mean(dim=2, keepdim=True)) ** 2).sum(dim=2).div(flat.shape[2] - 1).sqrt()
    rows = [(r - r.mean()) / (1e-8 + (r - r.mean()).norm()) for r in x]
    return torch.stack([torch.stack([(a * b).sum() for b in rows]) for a in rows]).clamp(-1, 1)


def test_predsim_loss_and_gradients_equal_a_hand_written_reference():
    head = _head("predsim", k=0, K=4)
    h, _, y = _batch()
    local = get_objective("predsim").loss(head, h, y, image=None, label_smoothing=0.0)
    conv = head.aux["similarity_conv"]
    sim = ((_similarity_reference(F.conv2d(h, conv.weight, padding=1))
            - _similarity_reference(F.one_hot(y, 5).float())) ** 2).mean()
    pred = F.cross_entropy(head.classifier.fc(h.flatten(1) if head.classifier.pool is None else
                                              head.classifier.pool(h).flatten(1)), y)
    ref = 0.01 * pred + 0.99 * sim
    assert torch.allclose(local.loss, ref, atol=1e-6)
    params = [h, conv.weight, *head.classifier.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(_grads(local.loss, *params), _grads(ref, *params)))
    assert torch.allclose(similarity_matrix(h), _similarity_reference(h), atol=1e-6)


# ---- training: every regime, the transport term on, estimates, export, resume ---------------------
# The parallel regime runs 6 epochs here (48 steps). With 3 (24 steps) InfoPro stayed near chance in it
# (0.21/0.15/0.12), and the cause was BatchNorm, not the objective: running statistics keep 0.9^24 = 8%
# of their initial variance, 1, while InfoPro's reconstruction-trained features have a variance near
# 0.1, so eval mode shrank every block's output. Recomputed with the final weights, the same network
# scored 0.46/0.48/0.37. Sequential modules escape, because they train on their input's eval-mode
# outputs (the cache). Parallel ones train on train-mode outputs and are tested on eval-mode ones.

@pytest.mark.parametrize("regime", ["sequential", "multilap", "parallel"])
@pytest.mark.parametrize("method", ["infopro", "infopro-c", "dgl", "predsim"])
def test_each_objective_learns_above_chance_in_each_regime(regime, method, synthetic_data):
    cfg = tiny_config(regime=regime, method=method, epochs={"sequential": 3, "multilap": 2, "parallel": 6}[regime],
                      laps=2)
    result = train(cfg, data=synthetic_data, out=None, quiet=True)
    assert result.best_module["test_accuracy"] > 3 * 0.1, [m["test_accuracy"] for m in result.modules]  # chance: 0.1
    assert all(m["peak_bytes"] > 0 for m in result.modules)


def test_infopro_with_the_transport_term_on_records_it(synthetic_data, tmp_path):
    cfg = tiny_config(regime="parallel", method="infopro", transport="on", epochs=6)
    result = train(cfg, data=synthetic_data, out=tmp_path / "run", quiet=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["objective"]["transport"] is True
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "epoch" and r["transport"] > 0 for r in records)
    assert result.best_module["test_accuracy"] > 0.3


def test_the_estimate_counts_infopro_decoder(synthetic_data):
    from edgetrgl.memory.estimate import estimate_sequential
    from edgetrgl.network import build_network

    spec = synthetic_data[2]
    peaks = {m: [p.peak_bytes for p in estimate_sequential(
        lambda m=m: build_network(tiny_config(), spec, num_modules=3, method=m), (64, 3, 16, 16), 10, False)]
        for m in ("vangl", "infopro")}
    assert peaks["infopro"][0] > peaks["vangl"][0]  # decoder weights, momentum and its upsampled activations


def test_export_leaves_the_decoder_out(synthetic_data, tmp_path):
    from edgetrgl.export.api import export_run

    run = tmp_path / "run"
    train(tiny_config(regime="sequential", method="infopro", epochs=1), data=synthetic_data, out=run, quiet=True)
    saved = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    assert any(".aux.decoder." in k for k in saved)  # the run keeps them (resume, --init-from) ...
    export_run(run, exit="1", format="torchscript", out=tmp_path / "m.pt")
    names = [n for n, _ in torch.jit.load(str(tmp_path / "m.pt")).named_parameters()]
    assert names and not any("decoder" in n or "aux" in n for n in names)  # ... the exported classifier does not


def test_infopro_killed_in_module_2_resumes_bit_identical(tmp_path):
    """The decoders, their momentum and the images beside cached features all come back on resume."""
    from tests.test_reliability import assert_same_run, edgetrgl as cli, tiny_args

    args = [*tiny_args(tmp_path, "sequential"), "--method", "infopro"]
    assert cli("train", *args, "--out", str(tmp_path / "reference")).returncode == 0
    crashed = cli("train", *args, "--out", str(tmp_path / "run"), env={"EDGETRGL_CRASH_AT": "step:13"})
    assert crashed.returncode == -9, crashed.stderr
    resumed = cli("train", "--resume", str(tmp_path / "run"), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(tmp_path / "reference", tmp_path / "run")


def test_unknown_method_is_one_line_naming_the_registered_ones(capsys, tmp_path):
    with pytest.raises(SystemExit) as stopped:  # argparse's choices, from the registry, refuse it
        main(["train", "--method", "nope", "--out", str(tmp_path / "run")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgetrgl: error:")
    assert all(name in err for name in BUILTIN)
    assert not (tmp_path / "run").exists()


def test_bench_estimates_and_charts_any_objective(tmp_path):
    report = tmp_path / "bench.json"
    assert main(["bench", "--estimate", "--compare", "e2e,sequential-infopro,parallel-predsim", "--model-option",
                 "width=4", "--image-size", "16", "--json", str(report), "--plot", str(tmp_path / "chart.png")]) == 0
    results = {r["method"]: r for r in json.loads(report.read_text())["results"]}
    assert {"sequential-infopro", "parallel-predsim", "sequential-trgl"} <= set(results)
    assert results["sequential-infopro"]["peak_bytes"] > results["sequential-vangl"]["peak_bytes"]  # its decoder
    assert (tmp_path / "chart.png").stat().st_size > 0
    assert main(["bench", "--estimate", "--compare", "sequential-nope"]) == 2  # one line naming the objectives


def test_pipeline_trains_every_objective_and_infopro_equals_one_process(tmp_path):
    """One torchrun launch, 2 ranks, every objective; InfoPro's images travel rank to rank beside the
    activations, so its weights equal the single-process parallel regime's, bit for bit."""
    import os
    import subprocess
    import sys

    from tests.test_distributed import ROOT, weights

    toml = tmp_path / "tiny.toml"
    # 48 steps, enough for BatchNorm's running statistics (see the parallel regime's test above)
    toml.write_text('model_options = { width = 4 }\ndataset_options = { num_train = 512, num_test = 256 }\n'
                    'dataset = "synthetic"\nmodules = 3\nepochs = 3\nbatch_size = 32\ndevice = "cpu"\naugment = false\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(ROOT / "tests" / "_objectives_pipeline_worker.py"), str(tmp_path), str(toml)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)  # a hang fails
    assert proc.returncode == 0, proc.stderr[-3000:]
    for method in ("infopro", "infopro-c", "dgl", "predsim"):
        summary = json.loads((tmp_path / method / "summary.json").read_text())  # every objective finished
        accuracies = [m["test_accuracy"] for m in summary["modules"]]
        assert len(accuracies) == 3 and max(accuracies) > 3 * 0.1, (method, accuracies)  # chance: 0.1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        values = {**__import__("edgetrgl.config", fromlist=["load_toml"]).load_toml(toml), "regime": "parallel",
                  "method": "infopro"}
        train(edgetrgl.TrainConfig.from_dict(values), out=tmp_path / "parallel", quiet=True)
    finally:
        torch.set_num_threads(threads)
    ours, reference = weights(tmp_path / "infopro"), weights(tmp_path / "parallel")
    assert ours.keys() == reference.keys()
    assert [k for k in ours if not torch.equal(ours[k], reference[k])] == []
