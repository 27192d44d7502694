"""A file the user hands over that is not what it should be ends in one line, never a traceback.

An unreadable image in an image folder (found before anything trains), a file that is not weights
given to ``--init-from``, a damaged run folder given to ``export`` or ``predict``, a broken image given
to ``predict``: exit 2, exactly one ``edgetrgl: error:`` line, and every file on disk as it was. One
case of each kind runs the CLI as a subprocess (what a user sees, traceback included); the rest run
``edgetrgl.cli.main.main`` in this process, where an unexpected exception fails the test with its
traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from edgetrgl.cli.main import main
from edgetrgl.data import image_check, load_dataset
from edgetrgl.errors import DataWarning, UserError
from edgetrgl.finetune.sources import read_source

ROOT = Path(__file__).resolve().parents[1]
NOT_WEIGHTS = "is not an edgetrgl checkpoint or a state dict: "
TINY = ["--set", "model_options={width=4}", "--modules", "2", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
        "--quiet"]


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``edgetrgl ARGV`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def cli_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "edgetrgl", *argv], capture_output=True, text=True, timeout=240,
                          cwd=cwd, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def one_error_line(rc: int, stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("edgetrgl: error: "), (rc, stderr)
    return lines[0]


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the run lock aside) and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


# ---- the bad files -------------------------------------------------------------------------------
def png_bytes(size: int = 20, colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg_header_and_garbage() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(buf, "JPEG")
    return buf.getvalue()[:20] + bytes(range(256)) * 2


def truncated_png() -> bytes:
    whole = png_bytes(64)
    return whole[:len(whole) // 2]


BAD_IMAGES = {"train/a/broken.jpg": jpeg_header_and_garbage(), "train/b/cut.png": truncated_png(),
              "test/a/empty.png": b""}


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """train/ and test/ with classes a and b, four good images each, and three unreadable ones."""
    root = tmp_path / "images"
    for split in ("train", "test"):
        for c, colour in (("a", (220, 20, 20)), ("b", (20, 20, 220))):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                (root / split / c / f"{i}.png").write_bytes(png_bytes(colour=(colour[0], 40 * i, colour[2])))
    for name, data in BAD_IMAGES.items():
        (root / name).write_bytes(data)
    return root


def test_an_unreadable_image_stops_the_cli_before_anything_is_touched(image_folder, tmp_path):
    run = tmp_path / "run"  # a finished run's folder, given with --overwrite: the refusal comes before it is touched
    run.mkdir()
    (run / "summary.json").write_text('{"precious": true}')
    before, images = fingerprint(run), fingerprint(image_folder)
    rc, _, stderr = cli_subprocess(["train", "--dataset", "imagefolder", "--data-dir", str(image_folder), *TINY,
                                    "--out", str(run), "--overwrite"], tmp_path)
    line = one_error_line(rc, stderr)
    assert "train/a/broken.jpg" in line and "and 2 more" in line and "--skip-bad-images" in line, line
    assert fingerprint(run) == before and fingerprint(image_folder) == images


def test_skip_bad_images_trains_on_the_rest_with_one_warning(image_folder, tmp_path):
    rc, _, stderr = cli(["train", "--dataset", "imagefolder", "--data-dir", str(image_folder), *TINY,
                         "--out", str(tmp_path / "run"), "--skip-bad-images"])
    assert rc == 0 and "Traceback" not in stderr, stderr
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert warnings == [warnings[0]] and warnings[0].startswith("edgetrgl: warning: skipped 3 unreadable images"), stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["dataset"]["num_train"], summary["dataset"]["num_test"]) == (8, 8)


def test_the_api_refuses_or_skips_unreadable_images(image_folder):
    with pytest.raises(UserError, match=r"unreadable image .*broken\.jpg \(not an image format PIL knows\) and 2 more"):
        load_dataset("imagefolder", data_dir=image_folder)
    with pytest.warns(DataWarning, match="skipped 3 unreadable images"):
        train, test, _ = load_dataset("imagefolder", data_dir=image_folder, skip_bad_images=True)
    kept = [p for p, _ in train.base.samples + test.base.samples]
    assert len(train) == len(test) == 8 and not any(p.endswith(tuple(BAD_IMAGES)) for p in kept)
    for _, (x_CHW, _) in zip(range(len(train)), train):  # every kept image decodes
        assert x_CHW.shape == (3, 32, 32)


def test_a_class_left_without_images_is_refused(image_folder):
    for good in (image_folder / "train" / "b").glob("[0-9].png"):
        good.unlink()
    with pytest.raises(UserError, match="class folder 'b' .* has no readable image left"):
        load_dataset("imagefolder", data_dir=image_folder, skip_bad_images=True)


def test_each_image_is_decoded_once_until_it_changes(image_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGETRGL_CACHE", str(tmp_path / "cache"))
    decoded: list[str] = []
    real = image_check.decode_problem
    monkeypatch.setattr(image_check, "decode_problem", lambda path: decoded.append(path) or real(path))
    paths = sorted(str(p) for p in image_folder.rglob("*") if p.is_file())
    first = image_check.unreadable_images(paths, image_folder)
    assert sorted(decoded) == paths and len(first) == 3
    assert list((tmp_path / "cache" / "image-check").glob("*.json"))
    decoded.clear()
    assert image_check.unreadable_images(paths, image_folder) == first and decoded == []
    (image_folder / "train/a/broken.jpg").write_bytes(png_bytes(size=21))  # fixed: a new size
    assert len(image_check.unreadable_images(paths, image_folder)) == 2
    assert decoded == [str(image_folder / "train/a/broken.jpg")]


# ---- --init-from ------------------------------------------------------------------------------------
class _Something:
    pass


def _foreign_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")


INIT_FROM = {  # file name: (how it is written, what the one line says it is)
    "notes.txt": (lambda p: p.write_text("hello world\n"), "a text file"),
    "photos.zip": (_foreign_zip, "a zip archive that torch.save did not write"),
    "empty.pt": (lambda p: p.write_bytes(b""), "an empty file"),
    "object.pkl": (lambda p: p.write_bytes(pickle.dumps(_Something(), protocol=4)), "a pickle of objects other than tensors"),
    "numbers.pt": (lambda p: torch.save({"lr": 0.1, "epochs": 3}, p), "it holds a dict with float values"),
    "list.pt": (lambda p: torch.save([torch.zeros(2)], p), "it holds a list"),
    "run-folder": (lambda p: (p.mkdir(), (p / "summary.json").write_text("{}")), "a folder without model.pt"),
}


@pytest.fixture
def tiny_toml(tmp_path) -> Path:
    toml = tmp_path / "tiny.toml"
    toml.write_text('dataset = "synthetic"\nmodel_options = { width = 4 }\n'
                    'dataset_options = { num_train = 32, num_test = 16 }\nmodules = 2\nepochs = 1\ndevice = "cpu"\n')
    return toml


@pytest.mark.parametrize("name", list(INIT_FROM))
def test_init_from_a_file_that_is_not_weights_is_one_line(name, tmp_path, tiny_toml):
    write, what = INIT_FROM[name]
    write(tmp_path / name)
    before = fingerprint(tmp_path)
    with pytest.raises(UserError, match=NOT_WEIGHTS + what):  # the API
        read_source(tmp_path / name)
    rc, _, stderr = cli(["train", "--config", str(tiny_toml), "--init-from", str(tmp_path / name), "--out",
                         str(tmp_path / "run"), "--quiet"])
    assert NOT_WEIGHTS + what in one_error_line(rc, stderr)
    assert fingerprint(tmp_path) == before and not (tmp_path / "run").exists()


def test_init_from_a_text_file_is_one_line_from_the_cli(tmp_path, tiny_toml):
    (tmp_path / "notes.txt").write_text("hello world\n")  # torch's unpickler raised IndexError / KeyError on it
    rc, _, stderr = cli_subprocess(["train", "--config", str(tiny_toml), "--init-from", "notes.txt", "--out", "run"],
                                   tmp_path)
    assert NOT_WEIGHTS + "a text file (it starts with 'hello world')" in one_error_line(rc, stderr)
    assert not (tmp_path / "run").exists()


# ---- export and predict of a damaged run folder --------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    rc, _, stderr = cli(["train", "--dataset", "synthetic", "--set", "dataset_options={num_train=32,num_test=16}",
                         *TINY, "--out", str(out)])
    assert rc == 0, stderr
    return out


def _edit_summary(change):
    def edit(run: Path) -> None:
        path = run / "summary.json"
        path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return edit


DAMAGED_RUNS = {  # what is damaged: (how, what the line says)
    "model.pt text": (lambda run: (run / "model.pt").write_text("hello"), "model.pt is corrupt: a text file"),
    "model.pt empty": (lambda run: (run / "model.pt").write_bytes(b""), "model.pt is corrupt: an empty file"),
    "model.pt a list": (lambda run: torch.save([1, 2], run / "model.pt"), "model.pt is corrupt: it holds no state_dict"),
    "summary a list": (_edit_summary(lambda s: [s]), "summary.json is not an edgetrgl run summary: it holds a list"),
    "summary without config": (_edit_summary(lambda s: {**s, "config": "x"}), "'config' is missing"),
    "summary without mean": (_edit_summary(lambda s: {**s, "dataset": {**s["dataset"], "mean": None}}),
                             "'dataset' is not a data spec"),
    "summary without modules": (_edit_summary(lambda s: {**s, "modules": []}), "'modules' lists no module results"),
}


@pytest.mark.parametrize("case", list(DAMAGED_RUNS))
def test_export_and_predict_of_a_damaged_run_are_one_line(case, finished_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage, message = DAMAGED_RUNS[case]
    damage(run)
    (tmp_path / "seven.png").write_bytes(png_bytes())
    before = fingerprint(tmp_path)
    for argv in (["export", str(run)], ["predict", str(run), str(tmp_path / "seven.png")]):
        rc, stdout, stderr = cli(argv)
        assert message in one_error_line(rc, stderr) and stdout == ""
    assert fingerprint(tmp_path) == before  # no exit<k>.ts written, nothing changed


def test_export_of_a_damaged_run_is_one_line_from_the_cli(finished_run, tmp_path):
    import shutil

    shutil.copytree(finished_run, tmp_path / "run")
    (tmp_path / "run" / "summary.json").write_text("[]")  # a TypeError traceback before
    rc, _, stderr = cli_subprocess(["export", "run"], tmp_path)
    assert "is not an edgetrgl run summary" in one_error_line(rc, stderr)


@pytest.mark.parametrize("data", [jpeg_header_and_garbage(), truncated_png(), b""], ids=["jpeg-garbage", "cut-png", "empty"])
def test_predict_on_a_broken_image_is_one_line(data, finished_run, tmp_path):
    (tmp_path / "photo.png").write_bytes(data)
    rc, stdout, stderr = cli(["predict", str(finished_run), str(tmp_path / "photo.png")])
    assert "photo.png is not an image" in one_error_line(rc, stderr) and stdout == ""


@pytest.mark.parametrize("name", ["notes.txt", "photos.zip", "empty.pt"])
def test_predict_with_a_file_that_is_not_a_model_is_one_line(name, tmp_path):
    INIT_FROM[name][0](tmp_path / name)  # a foreign zip: torch.export.load logged its own error line first
    (tmp_path / "seven.png").write_bytes(png_bytes())
    rc, stdout, stderr = cli(["predict", str(tmp_path / name), str(tmp_path / "seven.png")])
    assert f"{name} is not a model file" in one_error_line(rc, stderr) and stdout == ""
