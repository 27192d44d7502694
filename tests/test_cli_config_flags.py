"""The CLI generated from the config (edgetrgl/cli/config_flags.py): a flag per field in a group per
section, --set for any field parsed by its type, precedence defaults < --config < flags and --set,
the old spellings, registry choices read late, and one-line errors."""

import json
from pathlib import Path

import pytest

from edgetrgl.cli.config_flags import config_fields
from edgetrgl.cli.main import build_parser, main
from edgetrgl.cli.train import config_from_args
from edgetrgl.config import SECTIONS, TrainConfig

CLI = Path(__file__).resolve().parents[1] / "edgetrgl" / "cli"
TINY = ["--dataset", "synthetic", "--modules", "2", "--epochs", "1", "--batch-size", "64", "--device", "cpu",
        "--quiet", "--set", "model_options={width = 4}", "--set", 'dataset_options={"num_train": 256, "num_test": 128}']


def config(*argv: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *argv]))


def help_text(capsys, command="train") -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return capsys.readouterr().out


def exit_code_and_stderr(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's errors (our parser class exits 2 with one line)
        code = exc.code
    return code, capsys.readouterr().err


def test_every_field_has_a_documented_flag_in_its_sections_group(capsys):
    text = help_text(capsys)
    groups = {}  # "[network]" -> the help text of that group
    for chunk in text.split("\n\n["):
        name, _, body = chunk.partition("]:")
        groups[name] = body
    assert set(SECTIONS) <= set(groups), "every section is an argument group"
    for f in config_fields():
        assert f.meta.get("help"), f"{f.name} has no help text in config.py"
        assert f"  {f.flag}" in groups[f.section], f"{f.flag} is not in the [{f.section}] group"
    assert "lowest precedence first: the defaults shown, the --config file, then the flags and --set" in " ".join(text.split())


def test_no_hand_written_flag_remains_for_a_config_field():
    sources = (CLI / "train.py").read_text() + (CLI / "bench.py").read_text()
    for f in config_fields():
        assert f'"{f.flag}"' not in sources, f"{f.flag} is written by hand in cli/"


@pytest.mark.parametrize("argv,key,value", [
    (["--set", "optim.lr=0.02"], "lr", 0.02),
    (["--set", "lr=0.02"], "lr", 0.02),
    (["--set", "training.multiplier_step=0.5"], "multiplier_step", 0.5),  # no flag of its own before
    (["--set", "multiplier-every=7"], "multiplier_every", 7),
    (["--set", "budget=2GB"], "budget", 2 * 10**9),
    (["--set", "memory.budget=1.5GiB"], "budget", int(1.5 * 2**30)),
    (["--set", "augment=false"], "augment", False),
    (["--set", "checkpoint_blocks=on"], "checkpoint_blocks", True),
    (["--set", "checkpoint_blocks=auto"], "checkpoint_blocks", "auto"),
    (["--set", "boundaries=[3, 6]"], "boundaries", [3, 6]),
    (["--set", "boundaries=3,6"], "boundaries", [3, 6]),
    (["--set", "model_options={width = 4}"], "model_options", {"width": 4}),
    (["--set", 'dataset_options={"num_train": 256}'], "dataset_options", {"num_train": 256}),
    (["--set", "modules=auto"], "modules", "auto"),
    (["--set", "modules=3"], "modules", 3),
    (["--set", "data_dir=none"], "data_dir", None),
    (["--set", "loggers=[\"jsonl\", \"tensorboard\"]"], "loggers", ["jsonl", "tensorboard"]),
])
def test_set_takes_any_field_parsed_by_its_type(argv, key, value):
    assert getattr(config(*argv), key) == value


@pytest.mark.parametrize("argv,key,value", [
    (["--no-augment"], "augment", False),
    (["--download"], "download", True),
    (["--keep-cache"], "keep_cache", True),
    (["--budget", "2GB"], "budget", 2 * 10**9),
    (["--modules", "auto"], "modules", "auto"),
    (["--modules", "3"], "modules", 3),
    (["--boundaries", "3,6"], "boundaries", [3, 6]),
    (["--checkpoint-blocks"], "checkpoint_blocks", True),
    (["--checkpoint-blocks", "off"], "checkpoint_blocks", False),
    (["--data-parallel", "--sync-bn"], "sync_bn", True),
    (["--dist-timeout", "5"], "dist_timeout", 5.0),
    (["--device-profile", "rpi5-4gb"], "device_profile", "rpi5-4gb"),
    (["--init-from", "runs/x", "--freeze-modules", "2"], "freeze_modules", 2),
    (["--log", "tensorboard"], "loggers", ["jsonl", "console", "tensorboard"]),
    (["--log", "tensorboard", "--log", "tensorboard"], "loggers", ["jsonl", "console", "tensorboard"]),
])
def test_the_old_spellings_keep_working(argv, key, value):
    assert getattr(config(*argv), key) == value


def test_precedence_defaults_then_file_then_flags(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('lr = 0.1\ntau = 0.5\n[training]\nepochs = 3\n[run]\nloggers = ["jsonl"]\n')
    cfg = config("--config", str(toml), "--lr", "0.2", "--set", "training.epochs=4", "--log", "tensorboard")
    assert (cfg.lr, cfg.tau, cfg.epochs, cfg.seed) == (0.2, 0.5, 4, 0)  # flag, file, --set, default
    assert cfg.loggers == ["jsonl", "tensorboard"]  # --log adds to the file's sinks


def test_registry_choices_are_read_when_parsing_not_when_building(monkeypatch, capsys):
    from edgetrgl.training import regimes

    parser = build_parser()
    regimes.regime_names()  # the built-in ones, loaded
    monkeypatch.setitem(regimes._REGISTRY._entries, "toy-late", regimes.Regime("toy-late", lambda t: None, regimes.get_regime(
        "parallel").traits, "registered after the parser was built"))
    assert parser.parse_args(["train", "--regime", "toy-late"]).regime == "toy-late"
    assert "toy-late: registered after the parser was built" in " ".join(help_text(capsys).split())


@pytest.mark.parametrize("argv,message", [
    (["--set", "optim.nope=1"], "unknown config key 'optim.nope'"),
    (["--set", "optim.tau=1"], "tau is in [training], not [optim]"),
    (["--set", "lr=abc"], "lr: expected a number, got 'abc'"),
    (["--set", "epochs=1.5"], "epochs: expected an integer, got '1.5'"),
    (["--set", "augment=maybe"], "augment: expected true or false, got 'maybe'"),
    (["--set", "boundaries=3,x"], "boundaries: expected a list of integers, e.g. 1,2"),
    (["--set", "model_options=[unclosed"], "model_options: expected a TOML or JSON literal"),
    (["--set", "budget=two gigs"], "malformed size"),
    (["--set", "lr"], "takes [SECTION.]KEY=VALUE"),
    (["--log", "wandb"], "invalid choice: 'wandb'"),
    (["--lr", "x"], "argument --lr: expected a number, got 'x'"),
    (["--lr", "0.1", "--set", "lr=0.2"], "lr is given twice"),
    (["--set", "loggers=[\"console\"]"], "loggers must keep jsonl"),
])
def test_bad_values_are_one_line_and_exit_2(argv, message, capsys, tmp_path):
    code, err = exit_code_and_stderr(capsys, "train", *TINY, "--out", str(tmp_path / "r"), *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgetrgl: error: ") and message in lines[0], err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_set_is_recorded_in_config_json(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--set", "optim.lr=0.02", "--set", "multiplier_step=0.5", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert (saved["lr"], saved["multiplier_step"], saved["model_options"]) == (0.02, 0.5, {"width": 4})
    assert json.loads((out / "summary.json").read_text())["config"]["lr"] == 0.02


def test_bench_shares_the_fields_flags(capsys):
    text = " ".join(help_text(capsys, "bench").split())
    assert "[network]:" in text and "--batch-size BATCH_SIZE training batch size (default 64)" in text
    args = build_parser().parse_args(["bench", "--modules", "3", "--split", "balanced"])
    assert (args.modules, args.split, args.batch_size, args.model, args.device) == (3, "balanced", 64, "resnet20", "auto")
    code, err = exit_code_and_stderr(capsys, "bench", "--estimate", "--modules", "auto")
    assert code == 2 and "--modules must be a positive integer for bench" in err


def test_a_new_field_is_one_line_in_config(monkeypatch, capsys):
    import dataclasses

    from edgetrgl import config as config_module
    from edgetrgl.config import RunConfig, setting

    @dataclasses.dataclass
    class RunWithKnob(RunConfig):
        knob: float = setting(1.5, "a knob added in one line")  # the one line

    # what config.py derives from its sections at import, redone for the new section class
    monkeypatch.setitem(config_module.SECTIONS, "run", RunWithKnob)
    monkeypatch.setitem(config_module._OWNER, "knob", "run")
    text = help_text(capsys)
    assert "--knob KNOB" in text.split("[run]:")[1].split("\n\n[")[0] and "a knob added in one line (default 1.5)" in text
    assert config("--knob", "2").knob == 2.0 and config("--set", "run.knob=2.5").to_dict()["knob"] == 2.5


def test_help_quotes_what_the_registries_hold_when_it_is_printed(capsys):
    """A field's help names regimes, objectives and sinks by what they declare, not by hand: entries
    registered after the parser was built show up where their traits say, and go with them."""
    from edgetrgl.metrics import sinks
    from edgetrgl.objectives import Objective, register as register_objective, unregister as unregister_objective
    from edgetrgl.training import regimes

    parser = build_parser()
    traits = regimes.RegimeTraits(modular=True, needs_cache=True, plans_budget=True, multi_process=True)
    regimes.register(regimes.Regime("toy-regime", lambda ctx: None, traits, "a toy", epochs_for=lambda cfg, k: 1,
                                    epochs_help="per toy"))
    register_objective(type("ToyObjective", (Objective,), {"name": "toy-objective", "help": "a toy",
                                                           "transport": True, "options": ("knob",)})())
    sinks.register(sinks.SinkKind("toy-sink", "a toy sink"))

    def flag_help(flag):
        with pytest.raises(SystemExit):
            parser.parse_args(["train", "--help"])
        text = capsys.readouterr().out
        return " ".join(text.split(f"\n  {flag} ")[1].split("\n  -")[0].split())

    try:
        assert "(sequential, multilap, toy-regime)" in flag_help("--cache")
        assert "per module (sequential), per lap (multilap), per toy (toy-regime)" in flag_help("--epochs")
        assert flag_help("--epochs-step").startswith("EPOCHS_STEP sequential, toy-regime: module k")
        assert "pipeline, toy-regime regime" in flag_help("--pipeline-split")
        assert "toy-regime: a toy" in flag_help("--regime")
        assert "(the objective's default: on for trgl, toy-objective)" in flag_help("--transport")
        assert "toy-objective: knob" in flag_help("--objective-options") and "toy-objective: a toy" in flag_help("--method")
        assert "toy-sink: a toy sink" in flag_help("--log")
        assert parser.parse_args(["train", "--log", "toy-sink"]).loggers == [["toy-sink"]]
    finally:
        regimes.unregister("toy-regime")
        unregister_objective("toy-objective")
        sinks.unregister("toy-sink")
    assert "toy" not in flag_help("--cache") + flag_help("--transport") + flag_help("--log")
