"""Export for inference (TorchScript, ONNX, pt2) of a run's early exit, its check, and predict."""

import importlib.util
import json
import shutil

import pytest
import torch
from PIL import Image

from edgetrgl import UserError, export_run, load_run, predict
from edgetrgl.cli.main import main
from edgetrgl.data import load_dataset, normalise
from edgetrgl.export import load_exported
from tests.conftest import tiny_config

DATA = {"num_train": 256, "num_test": 128}
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run: ResNet-20 at width 4, 3 modules, one epoch each."""
    from edgetrgl import train

    out = tmp_path_factory.mktemp("export") / "run"
    train(tiny_config(modules=3, epochs=1, dataset_options=DATA, out=str(out)), quiet=True)
    return out


def listing(folder):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())


@pytest.mark.parametrize("fmt,exit", [
    ("torchscript", "1"),
    ("pt2", "last"),
    pytest.param("onnx", "best", marks=pytest.mark.skipif(not HAS_ONNX, reason="needs edgetrgl[onnx]")),
])
def test_export_agrees_with_the_run_on_the_whole_test_set(run_dir, tmp_path, fmt, exit):
    summary = json.loads((run_dir / "summary.json").read_text())
    result = export_run(run_dir, exit=exit, format=fmt, out=tmp_path / "model.bin")
    expected = {"1": 1, "last": 3, "best": summary["best_module"]["module"]}[exit]
    assert result.exit_module == expected and result.num_modules == 3
    assert result.check.samples == DATA["num_test"]
    assert result.check.agreement == 1.0 and result.check.passed
    assert result.check.max_abs_diff < 1e-4
    # the export's own accuracy is the run's accuracy for that module: same predictions, same labels
    assert result.check.accuracy == summary["modules"][expected - 1]["test_accuracy"] == result.test_accuracy
    assert result.size_bytes == (tmp_path / "model.bin").stat().st_size > 0
    assert 0 < result.parameters <= result.full_parameters
    if expected < 3:
        assert result.parameters < result.full_parameters  # the early exit is smaller
    assert not list(tmp_path.glob(".*partial*"))

    runner, meta, detected = load_exported(tmp_path / "model.bin")  # found by content, not by suffix
    assert detected.name == fmt
    assert meta["exit_module"] == expected and meta["input"]["channels"] == 3 and meta["input"]["image_size"] == 16
    assert meta["input"]["normalised_inside"] is True
    # any batch size, including one image
    _, test, spec = load_dataset("synthetic", seed=0, **DATA)
    one = test.images[:1].float() / 255
    reference = load_run(run_dir).net(normalise(test.images[:1], spec.mean, spec.std), exit_at=expected - 1)
    torch.testing.assert_close(runner(one), reference, atol=1e-4, rtol=1e-4)


def test_cli_export_then_predict_png_and_jpeg(run_dir, tmp_path, capsys):
    out = tmp_path / "digits.ts"
    assert main(["export", str(run_dir), "--exit", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exported module 2 of 3" in printed and "bytes" in printed and "MiB" in printed
    assert "parameters" in printed and "identical predictions 100.00%" in printed and "PASSED" in printed

    _, test, spec = load_dataset("synthetic", seed=0, **DATA)
    files = []
    for i in range(4):
        pixels = test.images[i].permute(1, 2, 0).numpy()
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels, "RGB").save(path)
        files.append(path)
    big = tmp_path / "big.jpg"  # another size and format: resized like the training data
    Image.fromarray(test.images[0].permute(1, 2, 0).numpy(), "RGB").resize((48, 48)).save(big, quality=95)
    files.append(big)

    assert main(["predict", str(out), *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and [line.split("\t")[0] for line in lines] == list(map(str, files))
    net = load_run(run_dir).net
    expected = net(normalise(test.images[:4], spec.mean, spec.std), exit_at=1).argmax(1).tolist()
    assert [int(line.split("\t")[1]) for line in lines[:4]] == expected  # PNG is lossless: the same pixels
    assert all(0.0 < float(line.split("\t")[2]) <= 1.0 for line in lines)

    # a run folder directly: the same module gives the same answers
    from_run = predict(run_dir, files[:4], exit=2)
    assert [p.label for p in from_run] == expected
    assert [p.label for p in predict(run_dir, files[:4])] == [p.label for p in predict(run_dir, files[:4], exit="best")]


def test_predict_names_classes_and_converts_to_greyscale(tmp_path):
    """A run on a dataset with class names (ImageFolder), 1 channel: names printed, RGB input converted."""
    from edgetrgl import train

    for split in ("train", "test"):
        for name, shade in (("dark", 30), ("light", 220)):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(6):
                Image.new("L", (12, 12), shade + i).save(folder / f"{i}.png")
    run = tmp_path / "run"
    train(tiny_config(dataset="imagefolder", data_dir=str(tmp_path / "data"), modules=2, epochs=2, batch_size=8,
                      augment=False, out=str(run), dataset_options={}), quiet=True)
    result = export_run(run, format="pt2", out=tmp_path / "shades.pt2")
    assert result.check.passed and result.metadata["class_names"] == ["dark", "light"]
    assert result.metadata["input"]["channels"] == 1
    colour = tmp_path / "colour.png"
    Image.new("RGB", (40, 30), (230, 230, 230)).save(colour)
    (prediction,) = predict(tmp_path / "shades.pt2", [colour])
    assert prediction.name in ("dark", "light") and prediction.line().startswith(f"{colour}\t")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args,message", [
    (["--exit", "4"], "--exit 4 is beyond the run's 3 module(s)"),
    (["--exit", "0"], "beyond"),
    (["--exit", "middle"], "--exit must be best, last or a module number"),
    (["--format", "tflite"], "unknown export format 'tflite'"),
])
def test_export_bad_input_is_one_line_exit_2_and_writes_nothing(run_dir, capsys, args, message):
    before = listing(run_dir)
    assert main(["export", str(run_dir), *args]) == 2
    assert message in _one_error_line(capsys)
    assert listing(run_dir) == before


def test_export_of_a_run_without_weights(run_dir, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("summary.json", "config.json"):
        shutil.copy(run_dir / name, unfinished / name)
    before = listing(unfinished)
    assert main(["export", str(unfinished), "--out", str(tmp_path / "m.ts")]) == 2
    assert "model.pt not found" in _one_error_line(capsys)
    assert listing(unfinished) == before and not (tmp_path / "m.ts").exists()
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "not found" in _one_error_line(capsys)


def test_export_never_overwrites_silently(run_dir, tmp_path, capsys):
    out = tmp_path / "keep.ts"
    out.write_text("precious")
    assert main(["export", str(run_dir), "--out", str(out)]) == 2
    assert "already exists" in _one_error_line(capsys) and out.read_text() == "precious"


def test_onnx_without_the_extra_names_it(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'edgetrgl\[onnx\]'"):
        export_run(run_dir, format="onnx", out=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_predict_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys):
    model = tmp_path / "m.pt2"
    export_run(run_dir, format="pt2", out=model)
    fake = tmp_path / "notes.png"
    fake.write_text("not an image at all")
    good = tmp_path / "ok.png"
    Image.new("RGB", (16, 16)).save(good)
    assert main(["predict", str(model), str(good), str(fake)]) == 2
    assert f"{fake} is not an image" in _one_error_line(capsys)
    assert capsys.readouterr().out == ""  # every image is read before any line is printed
    assert main(["predict", str(model), str(tmp_path / "missing.png")]) == 2
    assert "no such file" in _one_error_line(capsys)
    assert main(["predict", str(fake), str(good)]) == 2  # a model that is no model
    assert f"{fake} is not a model file" in _one_error_line(capsys)
    assert main(["predict", str(model), "--exit", "2", str(good)]) == 2
    assert "--exit applies to a run folder" in _one_error_line(capsys)
