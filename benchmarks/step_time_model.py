"""The planner's time model against measured step times: ``seconds = flops / F + bytes / B + ops * L``.

For every module of ResNet-20 (batch 128 and, at width 4, batch 64) and ResNet-56 (batch 32), with
and without checkpointing inside modules and micro-batches, this times real training steps on the CPU
(median of 5 after a warm-up) and counts the same step's work (FLOPs, bytes written, ops:
``edgetrgl.memory.work.count_work``). It fits F, B and L by least squares on relative error and
reports how well the fitted model and the rates in ``edgetrgl/planning/speed.py`` rank the plans.
The planner only needs the ranking to be right.

    python benchmarks/step_time_model.py            # about 2 minutes on 2 quiet CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table, write_results  # noqa: E402

import torch  # noqa: E402

from edgetrgl import TrainConfig  # noqa: E402
from edgetrgl.memory.work import Work, count_work  # noqa: E402
from edgetrgl.training.run import plan_run  # noqa: E402
from edgetrgl.planning.speed import machine_speed  # noqa: E402
from edgetrgl.step import local_step, make_sgd  # noqa: E402
from edgetrgl.training.loading import load_data  # noqa: E402

SETTINGS = [("resnet20", {}, 128), ("resnet20", {"width": 4}, 64), ("resnet56", {}, 32)]


def measure(precision: str, repeats: int) -> list[dict]:
    rows = []
    for model, options, batch in SETTINGS:
        cfg = TrainConfig(out="", model=model, model_options=options, checkpoint_blocks=False)
        train_set, _, spec = load_data(cfg)
        _, net = plan_run(cfg, spec)
        x, y = torch.randn(batch, *train_set[0][0].shape), torch.randint(0, 10, (batch,))
        for k in range(net.num_modules):
            stage, head = net.stages[k], net.heads[k]
            optimizer = make_sgd(list(stage.parameters()) + list(head.parameters()), 0.01, 0.9, 1e-4)
            for ckpt in (False, True):
                for micro in (None, batch // 4):
                    step = lambda: local_step(stage, head, optimizer, x, y, (1.0, 0.05), 0.0, micro,  # noqa: E731
                                              checkpoint_blocks=ckpt, precision=precision)
                    step()
                    times = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        step()
                        times.append(time.perf_counter() - started)
                    rows.append({"model": model, "options": options, "batch": batch, "module": k + 1,
                                 "checkpoint_blocks": ckpt, "micro_batch": micro, "precision": precision,
                                 "measured_s": statistics.median(times), **count_work(step).to_dict()})
                    print(rows[-1], file=sys.stderr)
            with torch.no_grad():
                x = stage.eval()(x)
    return rows


def fit(rows: list[dict]) -> tuple[float, float, float]:
    """(F, B, L) minimising relative error."""
    a = torch.tensor([[r["flops"] / 1e9, r["bytes_written"] / 1e9, r["ops"] / 1e3] for r in rows], dtype=torch.float64)
    t = torch.tensor([r["measured_s"] for r in rows], dtype=torch.float64)
    w = (1 / t).unsqueeze(1)
    s = torch.linalg.lstsq(a * w, t * w.squeeze(1)).solution.tolist()
    return 1e9 / s[0], 1e9 / s[1], s[2] / 1e3


def ranking_agreement(rows: list[dict], predict) -> float:
    """Share of same-module pairs of options whose order the model gets right."""
    right = total = 0
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], str(r["options"]), r["module"]), []).append(r)
    for group in groups.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                total += 1
                right += (a["measured_s"] < b["measured_s"]) == (predict(a) < predict(b))
    return right / max(total, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args.precision, args.repeats)
    flops_per_s, bytes_per_s, per_op = fit(rows)
    fitted = lambda r: r["flops"] / flops_per_s + r["bytes_written"] / bytes_per_s + r["ops"] * per_op  # noqa: E731
    rates = machine_speed("cpu", args.precision)
    shipped = lambda r: rates.seconds(Work(r["flops"], r["bytes_written"], r["ops"]))  # noqa: E731
    for r in rows:
        r["fitted_s"], r["shipped_s"] = fitted(r), shipped(r)
    errors = sorted(abs(r["shipped_s"] / r["measured_s"] - 1) for r in rows)
    payload = {"precision": args.precision, "fitted": {"flops_per_s": flops_per_s, "bytes_per_s": bytes_per_s,
                                                        "seconds_per_op": per_op},
               "shipped": {"flops_per_s": rates.flops_per_s, "bytes_per_s": rates.bytes_per_s,
                           "seconds_per_op": rates.seconds_per_op},
               "shipped_median_relative_error": statistics.median(errors), "shipped_max_relative_error": errors[-1],
               "ranking_agreement_shipped": ranking_agreement(rows, shipped),
               "ranking_agreement_fitted": ranking_agreement(rows, fitted), "rows": rows}
    lines = [[f"{r['model']} {r['options'] or ''} b{r['batch']}", r["module"], "on" if r["checkpoint_blocks"] else "off",
              r["micro_batch"] or "-", f"{1e3 * r['measured_s']:.1f}", f"{1e3 * r['shipped_s']:.1f}"] for r in rows]
    markdown = (f"{args.precision}, {torch.get_num_threads()} torch thread(s), {len(rows)} module steps. Fitted here: F = {flops_per_s / 1e9:.0f} GFLOP/s, "
                f"B = {bytes_per_s / 1e9:.1f} GB/s, L = {1e6 * per_op:.1f} us/op. Shipped CPU rates "
                f"(edgetrgl/planning/speed.py): median error {100 * payload['shipped_median_relative_error']:.0f}%, "
                f"max {100 * errors[-1]:.0f}%; pairs of options of one module ranked right: "
                f"{100 * payload['ranking_agreement_shipped']:.0f}% (fitted: {100 * payload['ranking_agreement_fitted']:.0f}%).\n\n"
                + table(["model", "module", "checkpointing", "micro-batch", "measured ms", "modelled ms"], lines))
    write_results(f"step_time_model_{args.precision}", payload, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
