"""Scale-out under torchrun on the CPU (gloo on 127.0.0.1, 2 to 3 processes, tiny models).

Every launch is bounded by a subprocess timeout: a hung rank fails its test instead of hanging CI.
Starting the processes costs most of the time, so each launch checks as much as it can.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgetrgl.cli.main import main
from edgetrgl.config import TrainConfig, load_toml
from edgetrgl.distributed.checkpoint import COMMIT, load_distributed, part_name
from edgetrgl.planning.layout import rank_layout
from edgetrgl.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
RESNET = 'model_options = { width = 4 }\ndataset_options = { num_train = 256, num_test = 128 }\n'
VIT = ('model = "vit_tiny"\nmodel_options = { dim = 16, depth = 3, heads = 2, patch_size = 4 }\n'
       'dataset_options = { num_train = 256, num_test = 128 }\n')  # no BatchNorm: data parallel is exact
COMMON = ["--dataset", "synthetic", "--modules", "3", "--epochs", "2", "--batch-size", "64", "--device", "cpu",
          "--quiet"]
TIMEOUT = 240  # seconds for one torchrun launch on a loaded 2-core machine; a hang fails the test


def torchrun(nproc: int, *args: str, env=None, max_restarts: int = 0):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "--max-restarts", str(max_restarts), "--monitor-interval", "0.2", *args]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=environ, cwd=ROOT)


def weights(run: Path) -> dict:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def epoch_records(run: Path) -> list:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return sorted((r["module"], r["epoch"], r["ce"], r["train_accuracy"]) for r in records if r["event"] == "epoch")


def assert_identical(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == [], "weights differ"
    assert [m["test_accuracy"] for m in summary(a)["modules"]] == [m["test_accuracy"] for m in summary(b)["modules"]]
    assert epoch_records(a) == epoch_records(b)


@pytest.fixture(scope="module")
def parallel_reference(tmp_path_factory):
    """The single-process parallel regime, one thread (as each torchrun worker), for the pipeline to equal."""
    root = tmp_path_factory.mktemp("reference")
    (root / "tiny.toml").write_text(RESNET)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", *COMMON, "--config", str(root / "tiny.toml"), "--regime", "parallel",
                     "--out", str(root / "run")]) == 0
    finally:
        torch.set_num_threads(threads)
    return root / "run"


# ---- the pipeline --------------------------------------------------------------------------------
def test_pipeline_two_ranks_killed_rank_restarts_and_equals_single_process(parallel_reference, tmp_path):
    """Rank 1 is SIGKILLed at its 5th step (epoch 2, after checkpoint 1); torchrun restarts both ranks,
    they resume from the committed checkpoint, and the finished run equals the single-process one."""
    (tmp_path / "tiny.toml").write_text(RESNET)
    out = tmp_path / "run"
    proc = torchrun(2, "-m", "edgetrgl", "train", *COMMON, "--config", str(tmp_path / "tiny.toml"),
                    "--regime", "pipeline", "--out", str(out), max_restarts=1,
                    env={"EDGETRGL_CRASH_AT": "step:5", "EDGETRGL_CRASH_RANK": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line)["event"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert "resume" in events, "the crash did not happen: nothing was resumed"
    assert_identical(out, parallel_reference)
    assert summary(out)["layout"] == [[0, 1], [1, 3]]  # memory-balanced: module 1 (the stem's) is heaviest
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [part_name(2, 0), part_name(2, 1)]


def test_pipeline_rank_lost_after_the_results_were_written_ends_with_the_finished_run(parallel_reference, tmp_path):
    """Found by benchmarks/chaos.py: rank 0 killed just after writing summary.json; torchrun restarted the
    group, every restart tried to resume the finished run and exited 2, and torchrun failed (exit 1)."""
    (tmp_path / "tiny.toml").write_text(RESNET)
    out = tmp_path / "run"
    proc = torchrun(2, "-m", "edgetrgl", "train", *COMMON, "--config", str(tmp_path / "tiny.toml"),
                    "--regime", "pipeline", "--out", str(out), max_restarts=1,
                    env={"EDGETRGL_CRASH_AT": "results:1", "EDGETRGL_CRASH_RANK": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "failed (exitcode: -9)" in proc.stderr, "the crash did not happen"
    assert_identical(out, parallel_reference)


def test_pipeline_three_ranks_equals_single_process(parallel_reference, tmp_path):
    (tmp_path / "tiny.toml").write_text(RESNET)
    out = tmp_path / "run"
    proc = torchrun(3, "-m", "edgetrgl", "train", *COMMON, "--config", str(tmp_path / "tiny.toml"),
                    "--regime", "pipeline", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_identical(out, parallel_reference)
    ranks = summary(out)["ranks"]
    assert [r["modules"] for r in ranks] == [[1], [2], [3]]
    assert all(r["peak_rss_bytes"] > 0 and r["peak_bytes"] > 0 for r in ranks)


# ---- data parallel -------------------------------------------------------------------------------
def test_data_parallel_equals_one_process_at_the_same_global_batch(tmp_path):
    """Two ranks, each half of every global batch (its fixed shard), gradients averaged: the weights
    equal a hand-written single-process run over the same global batches, to float tolerance."""
    (tmp_path / "vit.toml").write_text(VIT + "".join(f'{k} = {v}\n' for k, v in (
        ("dataset", '"synthetic"'), ("modules", 3), ("epochs", 2), ("batch_size", 64), ("device", '"cpu"'))))
    proc = torchrun(2, str(ROOT / "tests" / "_dist_worker.py"), str(tmp_path), str(tmp_path / "vit.toml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = _data_parallel_reference(TrainConfig.from_dict({**load_toml(tmp_path / "vit.toml"),
                                                                "regime": "parallel"}), world=2)
    got = weights(tmp_path / "parallel")
    for name, tensor in reference.items():
        torch.testing.assert_close(got[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    # sequential: each rank caches only its shard; the replicas stay equal, bit for bit
    run = tmp_path / "sequential"
    modules = summary(run)["modules"]
    train_share = 128 * 16 * 4 * 4 * 4  # 128 of 256 samples, 16 channels x 4x4 tokens, fp32
    assert modules[0]["cache_bytes"] == train_share + 128 * 16 * 4 * 4 * 4  # + the (whole) test set's
    serial = json.loads((run / COMMIT).read_text())["serial"]
    parts = [torch.load(run / part_name(serial, r), weights_only=True)["net"] for r in (0, 1)]
    assert all(torch.equal(parts[0][k], parts[1][k]) for k in parts[0])
    assert summary(tmp_path / "e2e")["world_size"] == 2


def _data_parallel_reference(cfg: TrainConfig, world: int) -> dict:
    """The parallel regime in one process, each global batch the concatenation of the ranks' batches."""
    from edgetrgl.data import make_loader
    from edgetrgl.distributed.data_parallel import shard_dataset
    from edgetrgl.metrics import MetricsWriter
    from edgetrgl.training.run import plan_run
    from edgetrgl.step import local_step, set_lr
    from edgetrgl.training.loading import load_data
    from edgetrgl.training.trainer import Trainer

    train_set, test_set, spec = load_data(cfg)
    plan, net = plan_run(cfg, spec)
    trainer = Trainer(cfg, plan, net, train_set, test_set, MetricsWriter(None, quiet=True))
    shards = [shard_dataset(train_set, r, world) for r in range(world)]
    steps = len(shards[0]) // (cfg.batch_size // world)
    for epoch in range(cfg.epochs):
        loaders = [make_loader(s, cfg.batch_size // world, shuffle=True, seed=cfg.seed, epoch=epoch) for s in shards]
        for batch, parts in enumerate(zip(*loaders)):
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            for k in range(net.num_modules):
                set_lr(trainer.optimizers[k], cfg.lr_schedule, cfg.lr, epoch * steps + batch, cfg.epochs * steps)
                x, _ = local_step(net.stages[k], net.heads[k], trainer.optimizers[k], x, y, trainer.tau.weights(k),
                                  cfg.label_smoothing)
    return net.state_dict()


# ---- one run body: a rank runs what one process runs --------------------------------------------
def test_torchrun_world_of_one_equals_one_process_for_every_single_process_regime(tmp_path):
    """The same seed gives the same run whichever way it is started: a torchrun world of one
    (--data-parallel) and one process run the same body, so every regime's weights, accuracies and
    epoch records are identical (one thread each, as torchrun's workers)."""
    from edgetrgl.api import train
    from tests._dist_one_body_worker import ONE_BODY_REGIMES

    (tmp_path / "tiny.toml").write_text(RESNET + 'dataset = "synthetic"\nmodules = 3\nepochs = 2\nbatch_size = 64\n'
                                                 'device = "cpu"\n')
    proc = torchrun(1, str(ROOT / "tests" / "_dist_one_body_worker.py"), str(tmp_path / "ranks"),
                    str(tmp_path / "tiny.toml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for regime, extra in ONE_BODY_REGIMES:
            cfg = TrainConfig.from_dict({**load_toml(tmp_path / "tiny.toml"), "regime": regime, **extra})
            train(cfg, out=tmp_path / "one" / regime, quiet=True)
    finally:
        torch.set_num_threads(threads)
    for regime, _ in ONE_BODY_REGIMES:
        assert_identical(tmp_path / "ranks" / regime, tmp_path / "one" / regime)
        assert summary(tmp_path / "ranks" / regime)["world_size"] == 1


def test_torchrun_fine_tunes_records_phases_and_bounds_every_ranks_allocator(tmp_path):
    """What the torchrun copy of the run used to drop: --init-from (the frozen prefix keeps the
    source's weights), the summary's phases, and the allocator bound of a whole-process budget on
    every rank, not only on rank 0 (which plans)."""
    from edgetrgl.api import train

    (tmp_path / "tiny.toml").write_text(RESNET)
    values = {**load_toml(tmp_path / "tiny.toml"), "dataset": "synthetic", "modules": 3, "epochs": 1,
              "batch_size": 64, "device": "cpu", "regime": "parallel"}
    train(TrainConfig.from_dict(values), out=tmp_path / "source", quiet=True)
    out = tmp_path / "run"
    proc = torchrun(2, "-m", "edgetrgl", "train", *COMMON, "--config", str(tmp_path / "tiny.toml"), "--regime",
                    "parallel", "--data-parallel", "--init-from", str(tmp_path / "source"), "--freeze-modules", "1",
                    "--device-profile", "rpi4-2gb", "--budget", "1500MiB", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, source, tuned = summary(out), weights(tmp_path / "source"), weights(out)
    assert result["init_from"]["loaded_tensors"] > 0
    frozen = [k for k in source if k.startswith(("stages.0.", "heads.0."))]
    assert frozen and all(torch.equal(tuned[k], source[k]) for k in frozen)
    assert any(not torch.equal(tuned[k], source[k]) for k in source if k.startswith("stages.2."))
    assert {"steps", "data", "evaluate", "other"} <= set(result["phases_s"]) and result["phases_s"]["steps"] > 0
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    assert all("128 KiB" in (r["allocator"] or "") for r in result["ranks"]), result["ranks"]


def test_pipeline_fine_tunes_with_frozen_modules(tmp_path):
    """--freeze-modules under the pipeline: the frozen module only runs forward on its rank (it used to
    crash in the backward: "element 0 of tensors does not require grad"), keeps the source's weights
    bit for bit, and the modules after it train."""
    from edgetrgl.api import train

    (tmp_path / "tiny.toml").write_text(RESNET)
    values = {**load_toml(tmp_path / "tiny.toml"), "dataset": "synthetic", "modules": 3, "epochs": 1,
              "batch_size": 64, "device": "cpu", "regime": "parallel"}
    train(TrainConfig.from_dict(values), out=tmp_path / "source", quiet=True)
    out = tmp_path / "run"
    proc = torchrun(2, "-m", "edgetrgl", "train", *COMMON, "--config", str(tmp_path / "tiny.toml"), "--regime",
                    "pipeline", "--init-from", str(tmp_path / "source"), "--freeze-modules", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    source, tuned = weights(tmp_path / "source"), weights(out)
    frozen = [k for k in source if k.startswith(("stages.0.", "heads.0."))]
    assert frozen and all(torch.equal(tuned[k], source[k]) for k in frozen)
    for k in (1, 2):  # rank 0 trains module 2 beside the frozen one, rank 1 module 3
        assert any(not torch.equal(tuned[n], source[n]) for n in source if n.startswith(f"stages.{k}."))
    result = summary(out)
    assert [m["epochs"] for m in result["modules"]] == [0, 2, 2]
    assert all(m["test_accuracy"] is not None for m in result["modules"])
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["module"] for r in logged if r["event"] == "module"] == [1, 2, 3]  # each module once, in order


def test_a_ranks_trainer_restores_the_phases_on_resume(synthetic_data):
    from edgetrgl.distributed.env import DistEnv
    from edgetrgl.distributed.trainer import DistributedTrainer
    from edgetrgl.metrics import MetricsWriter
    from edgetrgl.training.run import plan_run
    from tests.conftest import tiny_config

    cfg = tiny_config(regime="parallel", data_parallel=True, epochs=1)
    train_set, test_set, spec = synthetic_data

    def trainer():
        plan, net = plan_run(cfg, spec)
        return DistributedTrainer(cfg, plan, net, train_set, test_set, MetricsWriter(None, quiet=True),
                                  env=DistEnv(0, 1, 0, torch.device("cpu")), layout=[range(3)], saved_cfg=cfg)

    state = trainer().state_dict()
    state.update(phases_s={"steps": 12.5, "data": 1.5, "evaluate": 0.5, "cache_fill": 0.0, "checkpoint": 0.25},
                 serial=3)
    resumed = trainer()
    resumed.load_state_dict(state)
    assert resumed.phases.totals["steps"] == 12.5 and resumed.phases.totals["checkpoint"] == 0.25
    assert resumed.serial == 3


def test_resuming_a_torchrun_run_keeps_the_head_factory(tmp_path):
    """``edgetrgl.resume(..., head_factory=f)`` of a torchrun run builds the heads from f on the ranks:
    a data-parallel run with the user's heads is killed in its second epoch, then resumed under
    torchrun through the front door; it finishes with those heads (a default head would not even
    load the checkpoint's weights)."""
    (tmp_path / "tiny.toml").write_text(RESNET + 'dataset = "synthetic"\nmodules = 3\nepochs = 2\nbatch_size = 64\n'
                                        'regime = "parallel"\n')
    worker, run = str(ROOT / "tests" / "_dist_head_factory_worker.py"), tmp_path / "run"
    killed = torchrun(1, worker, "train", str(run), str(tmp_path / "tiny.toml"), env={"EDGETRGL_CRASH_AT": "step:6"})
    assert killed.returncode != 0 and not (run / "summary.json").exists()
    proc = torchrun(1, worker, "resume", str(run), str(tmp_path / "tiny.toml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "heads.txt").read_text() == "TaggedHead"
    assert summary(run)["modules"][2]["epochs"] == 2


# ---- bad input: one line, non-zero exit ----------------------------------------------------------
def test_rank_layout_equal_balanced_and_too_many_ranks():
    assert rank_layout(5, 2) == [range(0, 3), range(3, 5)]
    assert rank_layout(4, 2, weights=[10, 1, 1, 1]) == [range(0, 1), range(1, 4)]
    with pytest.raises(UserError, match="3 ranks but only 2 module"):
        rank_layout(2, 3)


def test_pipeline_without_torchrun_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", *COMMON, "--regime", "pipeline", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torchrun" in err
    assert not (tmp_path / "run").exists()


def test_unreachable_rendezvous_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    proc = subprocess.run([sys.executable, "-m", "edgetrgl", "train", *COMMON, "--regime", "pipeline",
                           "--dist-timeout", "1", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "could not reach the rendezvous" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_resume_with_another_world_size_is_refused(tmp_path):
    (tmp_path / COMMIT).write_text(json.dumps({"serial": 3, "world_size": 2}))
    with pytest.raises(UserError, match="saved by 2 ranks and is resumed by 3"):
        load_distributed(tmp_path, 0, 3)
    with pytest.raises(UserError, match="lacks the part"):
        load_distributed(tmp_path, 0, 2)


@pytest.mark.parametrize("flags,message", [
    (["--regime", "pipeline", "--data-parallel"], "not pipeline"),
    (["--regime", "parallel", "--sync-bn"], "--sync-bn needs --data-parallel"),
    (["--dist-timeout", "0"], "--dist-timeout"),
    (["--regime", "pipeline", "--auto-resume"], "--auto-resume is for one process"),
    (["--data-parallel", "--auto-resume"], "--auto-resume is for one process"),
])
def test_bad_distributed_flags(flags, message, capsys):
    assert main(["train", *COMMON, *flags]) == 2
    assert message in capsys.readouterr().err


def test_sync_bn_on_the_cpu_is_refused():
    from edgetrgl.distributed.data_parallel import convert_sync_batchnorm

    with pytest.raises(UserError, match="needs GPUs"):
        convert_sync_batchnorm(torch.nn.BatchNorm2d(2), torch.device("cpu"))


def test_a_locked_run_folder_refuses_every_rank(tmp_path):
    """Rank 0 holds the run folder's lock for the group; a folder in use ends the run with one line."""
    from edgetrgl.training.run_lock import hold_run_dir

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    with hold_run_dir(tmp_path / "run"):
        proc = subprocess.run([sys.executable, "-m", "edgetrgl", "train", *COMMON, "--regime", "pipeline",
                               "--dist-timeout", "20", "--out", str(tmp_path / "run")],
                              capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "is in use by" in proc.stderr, proc.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


def test_pipeline_is_a_registered_multi_process_regime():
    from edgetrgl.training.regimes import get_regime

    traits = get_regime("pipeline").traits
    assert traits.multi_process and traits.modular and not traits.needs_cache
    cfg = TrainConfig.from_dict({"distributed": {"data_parallel": True, "dist_timeout": 5}, "regime": "e2e"})
    assert cfg.distributed.data_parallel and cfg.dist_timeout == 5
    with pytest.raises(UserError, match="belongs in \\[distributed\\]"):
        TrainConfig.from_dict({"run": {"sync_bn": True}})
