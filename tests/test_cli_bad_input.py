"""Generated bad input (hypothesis): the TOML config, the train flags, --init-from, export and predict.

Every generated case either trains (a tiny synthetic run, stopped by a SIGTERM after its first
step: exit 143 with a checkpoint) or ends with exactly one ``edgetrgl: error:`` line and exit 2,
never a traceback; a folder given as ``--out`` that already held a run is left byte for byte as
it was. The CLI runs in this process (``edgetrgl.cli.main.main``), so an unexpected exception
fails the test with its traceback and the generated example.

The examples are derandomized (the same ones on every run) and few, so the whole file takes well
under a minute or two; ``EDGETRGL_FUZZ_EXAMPLES=500`` raises the count for a longer campaign.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import struct
import tempfile
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import edgetrgl._faults as faults
from edgetrgl.cli.main import main
from edgetrgl.config import _OWNER, SECTIONS

EXAMPLES = int(os.environ.get("EDGETRGL_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int):
    """Hypothesis settings: a fixed seed, a bounded count in CI (EDGETRGL_FUZZ_EXAMPLES for a campaign)."""
    return settings(max_examples=EXAMPLES or examples, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=True)


BASE = {"dataset": "synthetic", "modules": 2, "epochs": 1, "batch_size": 32, "device": "cpu",
        "model_options": {"width": 4}, "dataset_options": {"num_train": 64, "num_test": 32}}
PATH_KEYS = {"out", "cache_dir", "data_dir", "init_from"}  # given as safe names only: the test writes nothing outside
DATASETS = ["synthetic", "mnist5k", "imagefolder", "cifar10"]
REGIMES = ["sequential", "parallel", "multilap", "e2e", "pipeline"]


@pytest.fixture(scope="module", autouse=True)
def _sandbox(tmp_path_factory):
    """Run from a scratch folder (relative paths land there); stop every run after its first step."""
    cwd, env = os.getcwd(), os.environ.get("EDGETRGL_TERM_AT")
    os.chdir(tmp_path_factory.mktemp("fuzz-cwd"))
    os.environ["EDGETRGL_TERM_AT"] = "step:1"
    yield
    os.chdir(cwd)
    if env is None:
        os.environ.pop("EDGETRGL_TERM_AT", None)
    else:
        os.environ["EDGETRGL_TERM_AT"] = env


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``edgetrgl ARGV`` in this process: (exit code, stdout, stderr)."""
    faults._counts.clear()  # the SIGTERM comes at this run's first step, not the process's
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def assert_clean(rc: int, stderr: str, allowed: tuple[int, ...] = (0, 143)) -> None:
    """Trained (``allowed``), or exactly one ``edgetrgl: error:`` line and exit 2; never a traceback."""
    assert "Traceback" not in stderr, stderr
    if rc == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("edgetrgl: error: "), stderr
    else:
        assert rc in allowed, (rc, stderr)


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- values -------------------------------------------------------------------------------------
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\"), min_size=1, max_size=12).filter(
    lambda s: s.strip(".") and not s.startswith("~"))  # never a path outside the scratch folder
huge_ints = st.sampled_from([2**31, 2**40, 2**63 - 1, -(2**63), 10**18])
numbers = st.one_of(st.integers(-3, 8), huge_ints, st.floats(allow_nan=True, allow_infinity=True))
scalars = st.one_of(numbers, st.booleans(), names, st.sampled_from(["", "auto", "2GB", "1.5GiB", "-1MB", "0B", "1e9TB",
                                                                   "12 parsecs", "\u0661\u0662MB", "\x00"]))
options = st.dictionaries(st.sampled_from(["width", "num_train", "num_test", "image_size", "depth", "seed", "x"]) | names,
                          st.one_of(st.integers(-3, 8), huge_ints, st.floats(), names, st.booleans()), max_size=3)
values = st.one_of(scalars, st.lists(scalars, max_size=3), options)


@st.composite
def config_values(draw) -> dict:
    """The tiny base config with one to three keys mutated, added, misplaced or sectioned."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(set(_OWNER) - PATH_KEYS)) | names)
        value = draw(st.one_of(values, st.sampled_from(DATASETS + REGIMES + ["cuda", "rpi4", "disk", "bf16"])))
        where = draw(st.sampled_from(["flat", "section", "other section"]))
        if where == "flat" or key not in _OWNER:
            cfg[key] = value
        else:
            section = _OWNER[key] if where == "section" else draw(st.sampled_from(sorted(SECTIONS)) | names)
            cfg.setdefault(section, {}) if isinstance(cfg.get(section), dict) else cfg.__setitem__(section, {})
            cfg[section][key] = value
    return cfg


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if value in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                             else f"\\U{ord(c):08x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_text(cfg: dict) -> str:
    flat = [f"{toml_value(str(k))} = {toml_value(v)}" for k, v in cfg.items() if not (k in SECTIONS and isinstance(v, dict))]
    tables = [f"[{toml_value(k)}]\n" + "".join(f"{toml_value(str(i))} = {toml_value(v)}\n" for i, v in t.items())
              for k, t in cfg.items() if k in SECTIONS and isinstance(t, dict)]
    return "\n".join(flat) + "\n" + "\n".join(tables)


config_files = st.one_of(
    config_values().map(lambda cfg: toml_text(cfg).encode()),
    st.binary(max_size=64),                                              # garbage, not UTF-8, NUL bytes
    st.sampled_from([b"", b"\xef\xbb\xbf", b"[", b"a = ", "modules = 2\n[network]\nmodules = 3\n".encode(),
                     b"x" * 100_000, "model = \"\u00e9\u00e8\"\n".encode()]),
)


# ---- train: the TOML config, the flags, a run already in --out ----------------------------------
@fuzz(14)
@given(config_files)
def test_any_config_file_trains_or_is_one_line(data):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        (Path(tmp) / "c.toml").write_bytes(data)
        rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), "--out", str(Path(tmp) / "run"), "--quiet"])
        assert_clean(rc, stderr)
        if rc == 143:  # stopped after its first step: a checkpoint to resume from
            assert (Path(tmp) / "run" / "checkpoint.pt").exists()


FLAGS = ["--epochs", "--lr", "--budget", "--modules", "--batch-size", "--tau", "--cache", "--regime", "--seed",
         "--cache-views", "--precision", "--checkpoint-blocks", "--micro-batch", "--boundaries", "--train-fraction",
         "--label-smoothing", "--device", "--model", "--tau-schedule", "--split", "--laps", "--weight-decay"]
flag_values = st.one_of(names, st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e999", "9" * 40, "2GB", "auto",
                                                "on", "1,2", "", "--", "\u00bd", "0x10", "1_000"]),
                        st.integers(-5, 10).map(str))


@fuzz(14)
@given(st.lists(st.tuples(st.sampled_from(FLAGS) | names.map(lambda s: "--" + s), flag_values), min_size=1, max_size=3))
def test_any_train_flags_train_or_are_one_line(flags):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        (Path(tmp) / "c.toml").write_text(toml_text(BASE))
        argv = ["train", "--config", str(Path(tmp) / "c.toml"), "--out", str(Path(tmp) / "run"), "--quiet"]
        rc, _, stderr = cli(argv + [item for pair in flags for item in pair])
        assert_clean(rc, stderr)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished tiny run (trained once, with the SIGTERM lifted)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    (out.parent / "c.toml").write_text(toml_text(BASE))
    os.environ.pop("EDGETRGL_TERM_AT")
    try:
        rc, _, stderr = cli(["train", "--config", str(out.parent / "c.toml"), "--out", str(out), "--quiet"])
    finally:
        os.environ["EDGETRGL_TERM_AT"] = "step:1"
    assert rc == 0, stderr
    return out


@fuzz(12)
@given(config_files, st.sampled_from([[], ["--auto-resume"], ["--resume"]]))
def test_a_run_in_out_is_never_touched_by_a_bad_or_conflicting_command(finished_run, data, how):
    before = hashes(finished_run)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        (Path(tmp) / "c.toml").write_bytes(data)
        target = ["--resume", str(finished_run)] if how == ["--resume"] else ["--out", str(finished_run), *how]
        rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), *target, "--quiet"])
    assert_clean(rc, stderr, allowed=(0,))  # 0: --auto-resume with agreeing settings reports the finished run
    assert hashes(finished_run) == before


# ---- --init-from: never executes what it loads ---------------------------------------------------
class _Payload:
    """A pickle that would create a marker file when unpickled, if anything ever unpickled it unsafely."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def init_file(kind: str, blob: bytes, where: Path, marker: Path, finished: Path) -> Path:
    path = where / "init.pt"
    if kind == "bytes":
        path.write_bytes(blob)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(_Payload(str(marker))))
    elif kind == "torch pickle":
        torch.save({"state_dict": {"stages.0.x": _Payload(str(marker))}}, path)
    elif kind == "not a state dict":
        torch.save([1, 2, {"a": "b"}], path)
    elif kind == "empty dict":
        torch.save({}, path)
    elif kind == "wrong model":  # the run's own names, every tensor of another shape
        state = torch.load(finished / "model.pt", weights_only=True)["state_dict"]
        torch.save({k: torch.zeros(v.numel() + 1) for k, v in state.items()}, path)
    elif kind == "torchvision-like":
        torch.save({"conv1.weight": torch.zeros(2, 2), "layer1.0.conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(3)}, path)
    elif kind == "truncated":
        torch.save({"stages.0.w": torch.zeros(100)}, path)
        path.write_bytes(path.read_bytes()[: max(1, len(blob)) * 7])
    return path


@fuzz(12)
@given(st.sampled_from(["bytes", "pickle", "torch pickle", "not a state dict", "empty dict", "wrong model",
                        "torchvision-like", "truncated"]), st.binary(max_size=200))
def test_init_from_is_loaded_as_weights_only_and_bad_ones_are_one_line(finished_run, kind, blob):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        marker = Path(tmp).resolve() / "executed"
        path = init_file(kind, blob, Path(tmp), marker, finished_run)
        (Path(tmp) / "c.toml").write_text(toml_text(BASE))
        rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), "--init-from", str(path),
                             "--out", str(Path(tmp) / "run"), "--quiet"])
        assert not marker.exists(), "--init-from executed code from a pickle"
        assert_clean(rc, stderr)
        assert rc == 2, f"{kind}: a file that is no state dict of this model was accepted"


# ---- export and predict ----------------------------------------------------------------------------
@fuzz(10)
@given(st.one_of(st.sampled_from(["best", "last", "1", "2", "0", "3", "-1", "", "1.0", "\u0661"]), names),
       st.one_of(st.sampled_from(["torchscript", "pt2", "onnx", "TorchScript", "", "tflite"]), names),
       st.booleans())
def test_export_exports_or_is_one_line_and_never_alters_the_run(finished_run, exit, fmt, run_is_folder):
    before = {k: v for k, v in hashes(finished_run).items() if not k.startswith("exit")}
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        source = str(finished_run) if run_is_folder else str(finished_run / "summary.json")
        rc, _, stderr = cli(["export", source, "--exit", exit, "--format", fmt, "--out", str(Path(tmp) / "model.bin")])
        assert_clean(rc, stderr, allowed=(0,))
        assert (rc == 0) == (Path(tmp) / "model.bin").exists()
    assert {k: v for k, v in hashes(finished_run).items() if not k.startswith("exit")} == before


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def with_dimensions(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its header claiming another size (its CRC fixed, so only the size lies)."""
    ihdr = bytearray(png[12:29])  # b"IHDR" + 13 bytes of data
    ihdr[4:12] = struct.pack(">II", width, height)
    return png[:12] + bytes(ihdr) + struct.pack(">I", zlib.crc32(bytes(ihdr))) + png[33:]


image_files = st.one_of(
    st.binary(max_size=300),
    st.integers(0, 120).map(lambda n: png_bytes()[:n]),                       # a PNG cut short
    st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).map(lambda wh: with_dimensions(png_bytes(), *wh)),
    st.sampled_from([png_bytes(), png_bytes(1, 1), png_bytes(3000, 1), b"GIF89a", b"\xff\xd8\xff", "\u00e9".encode()]),
)


@fuzz(16)
@given(st.lists(image_files, min_size=1, max_size=3))
def test_predict_classifies_or_is_one_line(finished_run, images):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        paths = []
        for i, data in enumerate(images):
            (Path(tmp) / f"img{i}.png").write_bytes(data)
            paths.append(str(Path(tmp) / f"img{i}.png"))
        rc, stdout, stderr = cli(["predict", str(finished_run), *paths])
        assert_clean(rc, stderr, allowed=(0,))
        assert len(stdout.splitlines()) == (len(paths) if rc == 0 else 0)  # all images read before any is classified


def test_the_base_config_trains_and_stops_at_its_first_step():
    """The properties' "trains" outcome is real: the base config trains, is stopped by the SIGTERM, checkpoints."""
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        (Path(tmp) / "c.toml").write_text(toml_text(BASE))
        rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), "--out", str(Path(tmp) / "run"), "--quiet"])
        assert rc == 143 and "SIGTERM received" in stderr, stderr
        assert (Path(tmp) / "run" / "checkpoint.pt").exists()


# ---- the failing examples the properties found, each fixed, kept as regressions -----------------------
@pytest.mark.parametrize("data,message", [
    (b"\x80", "not UTF-8"),                                        # tomllib's UnicodeDecodeError was a traceback
    (b"budget = inf\n", "finite number of bytes"),                 # int(inf): OverflowError
    (b"budget = nan\n", "finite number of bytes"),                 # int(nan): ValueError
    (b'budget = "' + b"1" * 400 + b'GB"\n', "too large"),           # 400 digits: float inf again
    (b"momentum = -1.0\n", "--momentum must be a finite number at least 0"),          # torch's SGD: ValueError
    (b"weight_decay = -1.0\n", "--weight-decay must be a finite number at least 0"),  # likewise
    (b"lr = inf\n", "--lr must be a finite number greater than 0"),                   # trained into NaN
    (b'"\\r0" = 0\n', "unknown config key(s): \\r0"),              # a key with a line break: two error lines
])
def test_found_config_files_are_one_line(data, message):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        (Path(tmp) / "c.toml").write_bytes(toml_text(BASE).encode() + data)
        rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), "--out", str(Path(tmp) / "run"), "--quiet"])
        assert_clean(rc, stderr, allowed=())
        assert message in stderr
        assert not (Path(tmp) / "run").exists()


def test_found_init_from_an_empty_file_is_one_line():
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # EOFError has no message: splitlines()[0] was an IndexError
        (Path(tmp) / "empty.pt").write_bytes(b"")
        (Path(tmp) / "c.toml").write_text(toml_text(BASE))
        rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), "--init-from", str(Path(tmp) / "empty.pt"),
                             "--out", str(Path(tmp) / "run"), "--quiet"])
        assert_clean(rc, stderr, allowed=())
        assert "is not an edgetrgl checkpoint or a state dict: an empty file" in stderr


def test_found_a_foreign_pickle_in_init_from_is_one_line_without_torchs_warning():
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        marker = Path(tmp).resolve() / "executed"
        (Path(tmp) / "evil.pt").write_bytes(pickle.dumps(_Payload(str(marker)), protocol=4))
        (Path(tmp) / "c.toml").write_text(toml_text(BASE))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's "Detected pickle protocol 4" warning was a second stderr line
            rc, _, stderr = cli(["train", "--config", str(Path(tmp) / "c.toml"), "--init-from",
                                 str(Path(tmp) / "evil.pt"), "--out", str(Path(tmp) / "run"), "--quiet"])
        assert rc == 2 and len(stderr.strip().splitlines()) == 1 and not marker.exists(), stderr


def test_found_export_of_a_file_instead_of_a_run_folder_is_one_line(finished_run):
    rc, _, stderr = cli(["export", str(finished_run / "summary.json")])  # NotADirectoryError was a traceback
    assert_clean(rc, stderr, allowed=())
    assert "is this an edgetrgl run folder?" in stderr


def test_found_predict_refuses_a_huge_image_before_decoding_it(finished_run):
    with tempfile.TemporaryDirectory(dir=".") as tmp:  # PIL's DecompressionBombError was a traceback
        # over PIL's own limit (179 MP, refused as it opens), and under it (64 MP: PIL would warn, then decode)
        for name, (w, h), message in [("bomb.png", (134, 1_335_500), "bomb.png is not an image"),
                                      ("big.png", (8_000, 8_000), "8000x8000 pixels: larger than the 50 megapixels")]:
            (Path(tmp) / name).write_bytes(with_dimensions(png_bytes(), w, h))
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # PIL's DecompressionBombWarning would be a second stderr line
                rc, stdout, stderr = cli(["predict", str(finished_run), str(Path(tmp) / name)])
            assert_clean(rc, stderr, allowed=())
            assert message in stderr and stdout == ""
