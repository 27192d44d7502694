"""Distributed modes against the single-process run, in one run, plus a paper prediction for GPUs.

Runs the same training (ResNet-20 on synthetic 32x32 images, K=4, parallel regime, one epoch) as
1. one process (one thread, and all cores), 2. ``--regime pipeline`` over P ranks, 3. ``--regime parallel
--data-parallel`` over P ranks (torchrun, gloo, one thread per rank), and records samples per
second (training epochs only) and per-rank peak memory (process RSS, live-tensor peak of one step).
Then it measures each module's step time and boundary activation size in one process and predicts
the pipeline on P devices: bubble efficiency B/(B+P-1), the slowest rank as the bottleneck, and the
bytes each batch moves across each boundary at 25 GB/s (NVLink-class) and 10 GbE.

    python benchmarks/distributed.py [--ranks 2] [--train 2048] [--batch 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Contention, mib, table, add_output_args, output_folder, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LINKS = {"25 GB/s (NVLink-class)": 25e9, "10 GbE (1.25 GB/s)": 1.25e9}


def run_mode(name: str, ranks: int, args, toml: Path, root: Path, threads: int | None = None) -> dict:
    out = root / name
    common = ["-m", "edgetrgl", "train", "--config", str(toml), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if ranks == 1:
        cmd = [sys.executable, *common, "--regime", "parallel"]
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
    else:
        extra = ["--regime", "pipeline"] if name == "pipeline" else ["--regime", "parallel", "--data-parallel"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               *common, *extra]
        env["OMP_NUM_THREADS"] = "1"
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["event"] == "epoch"]
    # an epoch ends when its slowest rank does; per-module records carry their rank's epoch time
    epoch_time = sum(max(r["time_s"] for r in epochs if r["epoch"] == e) for e in {r["epoch"] for r in epochs})
    ranks_info = summary.get("ranks") or [{"rank": 0, "modules": [m["module"] for m in summary["modules"]],
                                           "peak_rss_bytes": summary["peak_rss_bytes"],
                                           "peak_bytes": summary["peak_bytes"]}]
    return {"mode": name, "ranks": ranks, "epoch_time_s": epoch_time, "wall_s": time.perf_counter() - started,
            "samples_per_s": args.train * args.epochs / epoch_time, "per_rank": ranks_info,
            "test_accuracy": [m["test_accuracy"] for m in summary["modules"]], "layout": summary.get("layout")}


def module_profile(args, toml: Path) -> list[dict]:
    """Median step time and output size of each module (one process, one thread, batch ``args.batch``)."""
    from edgetrgl.config import TrainConfig, load_toml
    from edgetrgl.data import make_loader
    from edgetrgl.metrics import MetricsWriter
    from edgetrgl.training.run import plan_run
    from edgetrgl.step import local_step
    from edgetrgl.training.loading import load_data
    from edgetrgl.training.trainer import Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig.from_dict({**load_toml(toml), "regime": "parallel"})
    train_set, test_set, spec = load_data(cfg)
    plan, net = plan_run(cfg, spec)
    trainer = Trainer(cfg, plan, net, train_set, test_set, MetricsWriter(None, quiet=True))
    x, y = next(iter(make_loader(train_set, cfg.batch_size, shuffle=True, seed=0)))
    profile = []
    for k in range(net.num_modules):
        times = []
        for _ in range(6):
            started = time.perf_counter()
            out, _ = local_step(net.stages[k], net.heads[k], trainer.optimizers[k], x, y, trainer.tau.weights(k), 0.0)
            times.append(time.perf_counter() - started)
        profile.append({"module": k + 1, "step_s": statistics.median(times[1:]),
                        "out_bytes": out.numel() * out.element_size(), "out_shape": list(out.shape)})
        x = out
    return profile


def predict(profile: list[dict], layout: list[list[int]], batches: int, batch: int) -> dict:
    """The pipeline on len(layout) devices, from per-module times: bottleneck, bubble, communication."""
    P = len(layout)
    per_rank = [sum(profile[k]["step_s"] for k in range(a, b)) for a, b in layout]
    total = sum(p["step_s"] for p in profile)
    boundary = [profile[b - 1]["out_bytes"] + batch * 8 for _, b in layout[:-1]]  # activations + int64 labels
    bubble = batches / (batches + P - 1)
    comm = {name: [v / bw for v in boundary] for name, bw in LINKS.items()}
    return {"ranks": P, "per_rank_step_s": per_rank, "single_device_step_s": total,
            "balance_speedup": total / max(per_rank), "bubble_efficiency": bubble,
            "predicted_speedup": total / max(per_rank) * bubble, "boundary_bytes_per_batch": boundary,
            "comm_s_per_batch": comm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--train", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--modules", type=int, default=4)
    add_output_args(parser)
    args = parser.parse_args()
    gauge = Contention()
    with tempfile.TemporaryDirectory(prefix="edgetrgl-dist-bench-") as tmp:
        root = Path(tmp)
        toml = root / "bench.toml"
        toml.write_text(f'dataset = "synthetic"\nmodel = "resnet20"\nmodules = {args.modules}\nepochs = {args.epochs}\n'
                        f'batch_size = {args.batch}\ndevice = "cpu"\naugment = false\n'
                        f'dataset_options = {{ num_train = {args.train}, num_test = 512, image_size = 32 }}\n')
        modes = [run_mode("single process, 1 thread", 1, args, toml, root, threads=1),
                 run_mode(f"single process, {os.cpu_count()} threads", 1, args, toml, root, threads=os.cpu_count()),
                 run_mode("pipeline", args.ranks, args, toml, root),
                 run_mode("data parallel", args.ranks, args, toml, root)]
        profile = module_profile(args, toml)
    layout = modes[2]["layout"]
    prediction = predict(profile, layout, -(-args.train // args.batch), args.batch)
    busy = gauge.busy_cores()
    base = modes[0]["samples_per_s"]
    rows = [[m["mode"], m["ranks"], f"{m['samples_per_s']:.0f}", f"{m['samples_per_s'] / base:.2f}x",
             " / ".join(mib(r["peak_rss_bytes"]) for r in m["per_rank"]),
             " / ".join(mib(r["peak_bytes"]) for r in m["per_rank"]),
             " / ".join(",".join(map(str, r["modules"])) for r in m["per_rank"])] for m in modes]
    md = (f"ResNet-20 (K={args.modules}, parallel regime), synthetic 32x32, {args.train} training samples, batch "
          f"{args.batch}, {args.epochs} epoch(s), CPU, gloo. Samples/s over the training epochs (evaluation and "
          f"start-up excluded). Other processes kept {busy} cores busy on average during the run.\n\n"
          + table(["mode", "ranks", "samples/s", "vs one process", "peak RSS per rank", "tensor peak per rank",
                   "modules per rank"], rows)
          + "\nPer-module step (forward, local loss, backward, SGD step), one thread, batch "
          f"{args.batch}:\n\n"
          + table(["module", "step", "output", "output bytes"],
                  [[p["module"], f"{1000 * p['step_s']:.1f} ms", "x".join(map(str, p["out_shape"])), mib(p["out_bytes"])]
                   for p in profile])
          + f"\nPrediction for {prediction['ranks']} devices with this layout {layout}: slowest rank "
          f"{1000 * max(prediction['per_rank_step_s']):.1f} ms of {1000 * prediction['single_device_step_s']:.1f} ms "
          f"per batch (balance speedup {prediction['balance_speedup']:.2f}x), bubble efficiency "
          f"{prediction['bubble_efficiency']:.3f}, predicted speedup {prediction['predicted_speedup']:.2f}x. "
          f"Per batch each boundary moves " + ", ".join(mib(b) for b in prediction["boundary_bytes_per_batch"])
          + "; " + "; ".join(f"{name}: " + ", ".join(f"{1e3 * t:.3f} ms" for t in ts)
                             for name, ts in prediction["comm_s_per_batch"].items()) + ".\n")
    write_results("distributed", {"modes": modes, "profile": profile, "prediction": prediction,
                                  "other_busy_cores": busy, "args": vars(args)}, md, output_folder(args))
    print(md)


if __name__ == "__main__":
    main()
