"""On-device fine-tuning: --init-from (a torchvision ResNet or a finished run) and --freeze-modules."""

import json

import pytest
import torch

from edgetrgl import UserError, train
from edgetrgl.cli.main import main
from edgetrgl.data import load_dataset
from edgetrgl.finetune import InitSource, plan_init, read_source
from edgetrgl.finetune.mapping import split_free
from edgetrgl.api import build_network
from tests.conftest import tiny_config

DATA = {"num_train": 128, "num_test": 64}
SMALL = {"num_train": 32, "num_test": 16, "image_size": 8}  # for ResNet-18: 8x8 images, seconds per epoch


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished tiny run: ResNet-20 at width 4, 3 modules."""
    out = tmp_path_factory.mktemp("finetune") / "source"
    train(tiny_config(modules=3, epochs=1, dataset_options=DATA, out=str(out)), quiet=True)
    return out


@pytest.fixture(scope="module")
def torchvision_resnet18(tmp_path_factory):
    """torchvision's ResNet-18 with random weights, saved as its own state dict (no download)."""
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)
    for module in tv.modules():  # non-trivial BatchNorm statistics, so that loading them shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    return path, tv.eval()


def _resnet18_net(modules=4):
    cfg = tiny_config(model="resnet18", model_options={}, modules=modules, dataset_options=SMALL)
    _, _, spec = load_dataset("synthetic", seed=0, **SMALL)
    return cfg, spec, build_network(cfg, spec)


def test_torchvision_keys_map_onto_our_blocks(torchvision_resnet18):
    path, tv = torchvision_resnet18
    _, _, net = _resnet18_net()
    plan = plan_init(net, read_source(path), "resnet18")
    layer_keys = [k for k in tv.state_dict() if k.startswith("layer")]
    assert plan.loaded == len(layer_keys) and plan.kind == "torchvision"
    assert set(plan.skipped) == {"conv1.*, bn1.*", "fc.*"}
    net.load_state_dict(plan.state)
    net.eval()
    # module 2 = layer2 (blocks 2, 3 of 8): our wrapped block computes exactly what torchvision's does
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net.stages[1].blocks[0](x), tv.layer2[0](x), rtol=0, atol=0)
        torch.testing.assert_close(net.stages[3].blocks[1](tv.layer4[0](tv.layer3(tv.layer2(x)))),
                                   tv.layer4[1](tv.layer4[0](tv.layer3(tv.layer2(x)))), rtol=0, atol=0)


def test_finetune_resnet18_from_torchvision_trains_only_the_unfrozen_modules(torchvision_resnet18, tmp_path):
    path, tv = torchvision_resnet18
    cfg = tiny_config(model="resnet18", model_options={}, modules=4, epochs=1, batch_size=16,
                      dataset_options=SMALL, init_from=str(path), freeze_modules=2, out=str(tmp_path / "ft"))
    result = train(cfg, quiet=True)
    summary = json.loads((tmp_path / "ft" / "summary.json").read_text())
    assert summary["init_from"]["loaded_tensors"] == len([k for k in tv.state_dict() if k.startswith("layer")])
    assert [m["epochs"] for m in summary["modules"]] == [0, 0, 1, 1]
    assert all(m["test_accuracy"] is not None for m in summary["modules"])  # frozen heads are still evaluated
    state = result.net.state_dict()
    theirs = tv.state_dict()
    for free_key, tensor in ((split_free(k, result.net.block_ranges), v) for k, v in state.items()):
        if not free_key.startswith("blocks."):
            continue
        index, _, rest = free_key[len("blocks."):].partition(".")
        layer, block = divmod(int(index), 2)
        tv_tensor = theirs[f"layer{layer + 1}.{block}.{rest.removeprefix('block.')}"]
        if int(index) < 4:  # modules 1-2 (layer1, layer2): frozen, bit-identical, BatchNorm statistics too
            assert torch.equal(tensor, tv_tensor), free_key
        elif rest.endswith("conv1.weight"):
            assert not torch.equal(tensor, tv_tensor), free_key  # modules 3-4 trained


@pytest.mark.parametrize("regime,recalibrate", [("sequential", False), ("parallel", False), ("e2e", False),
                                                ("sequential", True), ("parallel", True), ("e2e", True)])
def test_finetune_from_a_run_folder_keeps_the_frozen_prefix_bit_identical(source_run, tmp_path, regime, recalibrate):
    """With --recalibrate-bn too: the kept modules' BatchNorm statistics are not recomputed."""
    before = torch.load(source_run / "model.pt", weights_only=True)["state_dict"]
    ranges = [(0, 3), (3, 6), (6, 9)]  # resnet20: 9 blocks in 3 modules
    cfg = tiny_config(regime=regime, modules=3, epochs=1, dataset_options=DATA, init_from=str(source_run),
                      freeze_modules=1, out=str(tmp_path / "ft"), recalibrate_bn=recalibrate)
    result = train(cfg, quiet=True)
    after = {split_free(k, result.net.block_ranges): v for k, v in result.net.state_dict().items()}
    source = {split_free(k, ranges): v for k, v in before.items()}
    frozen = [k for k in source if k.startswith(("stem.", "blocks.0.", "blocks.1.", "blocks.2."))]
    if regime != "e2e":
        frozen += [k for k in source if k.startswith("heads.0.")]
    assert len(frozen) > 10
    for key in frozen:
        assert torch.equal(after[key], source[key]), key
    trained = [k for k in source if k.startswith(("blocks.3.", "blocks.8.")) and k.endswith("conv1.weight")]
    assert trained and all(not torch.equal(after[k], source[k]) for k in trained)
    skipped = result.extra["init_from"]["skipped"]
    assert ("heads.*" in skipped) == (regime == "e2e")  # one module: the 3-module run's heads do not fit


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


TINY = ["--model", "resnet20", "--dataset", "synthetic", "--modules", "3", "--epochs", "1", "--device", "cpu",
        "--quiet", "--config"]


def test_mismatching_weights_name_the_first_key_and_touch_nothing(source_run, torchvision_resnet18, tmp_path, capsys):
    toml = tmp_path / "tiny.toml"
    toml.write_text('model_options = { width = 8 }\ndataset_options = { num_train = 128, num_test = 64 }\n')
    victim = tmp_path / "old"  # an earlier run that --overwrite would replace: a bad file must not delete it
    victim.mkdir()
    (victim / "summary.json").write_text('{"precious": true}')
    source_bytes = (source_run / "model.pt").read_bytes()

    def bad(*args, config=toml):
        assert main(["train", *TINY, str(config), *args]) == 2
        return _one_error_line(capsys)

    line = bad("--init-from", str(source_run), "--out", str(victim), "--overwrite")  # width 4 into width 8
    assert "stages.0.stem.0.weight has shape [4, 3, 3, 3], the model's stages.0.stem.0.weight [8, 3, 3, 3]" in line
    assert (victim / "summary.json").read_text() == '{"precious": true}' and len([p for p in victim.iterdir() if p.name != ".lock"]) == 1  # .lock: the run lock
    assert (source_run / "model.pt").read_bytes() == source_bytes

    tv_path, _ = torchvision_resnet18
    assert "can start resnet18 or resnet50, not resnet20" in bad("--init-from", str(tv_path), "--out", str(tmp_path / "a"))
    state = torch.load(tv_path, weights_only=True)
    del state["layer3.1.bn2.running_var"]
    torch.save(state, tmp_path / "partial.pth")
    small = tmp_path / "small.toml"
    small.write_text('dataset_options = { num_train = 32, num_test = 16, image_size = 8 }\n')
    line = bad("--model", "resnet18", "--init-from", str(tmp_path / "partial.pth"), "--out", str(tmp_path / "b"), config=small)
    assert "it lacks layer3.1.bn2.running_var" in line
    (tmp_path / "notes.pt").write_text("not weights")
    assert "not an edgetrgl checkpoint or a state dict: a text file" in bad("--init-from", str(tmp_path / "notes.pt"), "--out", str(tmp_path / "c"))
    assert "no such file or run folder" in bad("--init-from", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d"))
    assert "leaves nothing to train" in bad("--freeze-modules", "3", "--out", str(tmp_path / "e"))
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_a_resnet50_checkpoint_does_not_fit_resnet18():
    import torchvision

    _, _, net = _resnet18_net()
    state = torchvision.models.resnet50(weights=None).state_dict()
    source = InitSource("resnet50.pth", "torchvision", state)
    with pytest.raises(UserError, match=r"layer1\.0\.conv1\.weight has shape \[64, 64, 1, 1\]"):
        plan_init(net, source, "resnet18")
