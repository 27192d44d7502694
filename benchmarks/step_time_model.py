"""The planner's time model against measured step times: ``seconds = flops / F + bytes / B + ops * L``.

For every module of a few networks, with and without checkpointing inside modules and micro-batches
(and, given several ``--precision``, at each precision), this times real training steps (median of
``--repeats`` after a warm-up; on CUDA with a device synchronize around each) and counts the same
step's work (FLOPs, bytes written, ops: ``edgetrgl.memory.work.count_work``). It fits F, B and L per
precision by least squares on relative error and reports how well the fitted model and the rates in
``edgetrgl/planning/speed.py`` rank the options: pairs of one module's options, and pairs of whole
plans (the options summed over a network's modules: the planner's choice). Only the ranking matters.

    python benchmarks/step_time_model.py --record                         # CPU, about 2 minutes on 2 cores
    python benchmarks/step_time_model.py --device cuda --precision fp32,bf16 --rates-out cuda_rates.json
    python benchmarks/step_time_model.py --quick --precision fp32,bf16    # seconds: the code path only

On CUDA it measures ResNet-56 (3x32x32, batch 128, K=4) and ResNet-110 (3x96x96, batch 64, K=8), and
``--rates-out`` writes ``edgetrgl/planning/cuda_rates.json``'s next version: the file's GPUs plus this
one's fit, keyed by ``torch.cuda.get_device_name`` (copy it over the package's file to ship it).
``--deadline-s`` stops measuring when it passes and fits the rows it has.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table, add_output_args, output_folder, write_results  # noqa: E402

import torch  # noqa: E402

from edgetrgl import TrainConfig  # noqa: E402
from edgetrgl.memory.work import MachineSpeed, Work, count_work  # noqa: E402
from edgetrgl.training.run import plan_run  # noqa: E402
from edgetrgl.planning.speed import RATES_FILE, machine_speed  # noqa: E402
from edgetrgl.step import local_step, make_sgd  # noqa: E402
from edgetrgl.training.loading import load_data  # noqa: E402

# (model, options, batch, synthetic image size or None for the default dataset, K or None for the default)
SETTINGS = {
    "cpu": [("resnet20", {}, 128, None, None), ("resnet20", {"width": 4}, 64, None, None), ("resnet56", {}, 32, None, None)],
    "cuda": [("resnet56", {}, 128, 32, 4), ("resnet110", {}, 64, 96, 8)],
    "quick": [("resnet20", {"width": 4}, 16, 16, 2)],
}


def measure(settings, precisions: list[str], repeats: int, device: torch.device, deadline: float) -> list[dict]:
    """One row per (setting, module, checkpointing, micro-batch, precision), until ``deadline`` (monotonic)."""
    rows = []
    for model, options, batch, image_size, modules in settings:
        data = {} if image_size is None else {"dataset": "synthetic", "dataset_options": {
            "image_size": image_size, "num_train": batch, "num_test": batch}}
        cfg = TrainConfig(out="", model=model, model_options=options, checkpoint_blocks=False, **data,
                          **({} if modules is None else {"modules": modules}))
        train_set, _, spec = load_data(cfg)
        _, net = plan_run(cfg, spec)
        x = torch.randn(batch, *train_set[0][0].shape, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        for k in range(net.num_modules):
            stage, head = net.stages[k].to(device).train(), net.heads[k].to(device).train()
            optimizer = make_sgd(list(stage.parameters()) + list(head.parameters()), 0.01, 0.9, 1e-4)
            for ckpt in (False, True):
                for micro in (None, batch // 4):
                    for precision in precisions:  # innermost: a deadline still leaves rows of every precision
                        if time.monotonic() > deadline:
                            return rows
                        step = lambda: local_step(stage, head, optimizer, x, y, (1.0, 0.05), 0.0, micro,  # noqa: E731
                                                  checkpoint_blocks=ckpt, precision=precision)
                        rows.append({"model": model, "options": options, "batch": batch, "image_size": image_size,
                                     "module": k + 1, "checkpoint_blocks": ckpt, "micro_batch": micro,
                                     "precision": precision, "measured_s": _median_time(step, repeats, device),
                                     **count_work(step).to_dict()})
                        print(rows[-1], file=sys.stderr)
            with torch.no_grad():
                x = stage.eval()(x)
            stage.cpu(), head.cpu()
    return rows


def _median_time(step, repeats: int, device: torch.device) -> float:
    step()  # warm-up: allocations, cuDNN's choice of algorithm
    times = []
    for _ in range(repeats):
        _sync(device)  # the clock must not start while earlier kernels still run
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fit(rows: list[dict]) -> MachineSpeed:
    """(F, B, L) minimising relative error, each cost per unit non-negative (a negative one would make
    more work faster): the best least-squares fit over the subsets of the three terms."""
    a = torch.tensor([[r["flops"] / 1e9, r["bytes_written"] / 1e9, r["ops"] / 1e3] for r in rows], dtype=torch.float64)
    t = torch.tensor([r["measured_s"] for r in rows], dtype=torch.float64)
    w = (1 / t).unsqueeze(1)
    best, best_residual = [0.0, 0.0, 0.0], float("inf")
    for subset in ([0, 1, 2], [0, 1], [0, 2], [1, 2], [0], [1], [2]):
        solution = torch.linalg.lstsq((a * w)[:, subset], t * w.squeeze(1)).solution
        if (solution < 0).any():
            continue
        coef = [0.0, 0.0, 0.0]
        for i, value in zip(subset, solution.tolist()):
            coef[i] = value
        residual = float(((a @ torch.tensor(coef, dtype=torch.float64) - t) / t).pow(2).sum())
        if residual < best_residual:
            best, best_residual = coef, residual
    # a zero cost per unit: that term is free on this machine (an infinite rate)
    return MachineSpeed(1e9 / best[0] if best[0] > 0 else float("inf"), 1e9 / best[1] if best[1] > 0 else float("inf"),
                        best[2] / 1e3, source="fitted")


def ranking_agreement(rows: list[dict], predict, key=lambda r: (r["model"], str(r["options"]), r["module"])) -> float | None:
    """Share of pairs within each ``key`` group (default: one module's options) ordered right by ``predict``."""
    right = total = 0
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    for group in groups.values():
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                total += 1
                right += (a["measured_s"] < b["measured_s"]) == (predict(a) < predict(b))
    return right / total if total else None


def plans(rows: list[dict], predict) -> list[dict]:
    """Whole plans: each (network, options, precision) summed over its modules, measured and predicted."""
    sums: dict[tuple, dict] = {}
    for r in rows:
        plan = (r["model"], str(r["options"]), r["checkpoint_blocks"], r["micro_batch"], r["precision"])
        s = sums.setdefault(plan, {"model": r["model"], "options": r["options"], "checkpoint_blocks": r["checkpoint_blocks"],
                                   "micro_batch": r["micro_batch"], "precision": r["precision"], "modules": 0,
                                   "measured_s": 0.0, "predicted_s": 0.0})
        s["modules"] += 1
        s["measured_s"] += r["measured_s"]
        s["predicted_s"] += predict(r)
    most: dict[str, int] = {}
    for s in sums.values():
        most[s["model"]] = max(most.get(s["model"], 0), s["modules"])
    return [s for s in sums.values() if s["modules"] == most[s["model"]]]  # a deadline may have cut some plans short


def _rates_dict(speed: MachineSpeed) -> dict[str, float | None]:
    """JSON has no infinity: a free term's rate is written as null (planning/speed.py reads it back as such)."""
    return {key: None if value == float("inf") else value for key, value in
            (("flops_per_s", speed.flops_per_s), ("bytes_per_s", speed.bytes_per_s), ("seconds_per_op", speed.seconds_per_op))}


def merged_rates_file(gpu: str, fitted: dict[str, MachineSpeed], source: str, agreement: dict) -> dict:
    """``cuda_rates.json``'s next version: the shipped file's GPUs, with ``gpu``'s entry (re)placed."""
    try:
        current = json.loads(RATES_FILE.read_text())
    except (OSError, ValueError):
        current = {"format": "edgetrgl-cuda-rates/1", "gpus": {}}
    entry = {precision: _rates_dict(speed) for precision, speed in fitted.items()}
    entry.update(source=source, **agreement)
    current.setdefault("gpus", {})[gpu] = entry
    return current


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16 (default fp32)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="one tiny network, one repeat: the code path in seconds")
    parser.add_argument("--deadline-s", type=float, help="stop measuring after this many seconds and fit what was measured")
    parser.add_argument("--name", help="results file name (default step_time_model_<precision> on the CPU, "
                                       "step_time_model_cuda-<gpu> on CUDA)")
    parser.add_argument("--rates-out", help="write cuda_rates.json's next version, with this device's fit, here")
    add_output_args(parser)
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    if not precisions or any(p not in ("fp32", "bf16") for p in precisions):
        parser.error(f"--precision takes fp32 and/or bf16, got {args.precision!r}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    settings = SETTINGS["quick" if args.quick else args.device]
    repeats = 1 if args.quick else args.repeats
    started = time.monotonic()
    deadline = started + args.deadline_s if args.deadline_s else float("inf")
    rows = measure(settings, precisions, repeats, device, deadline)
    fitted = {p: fit(rs) for p in precisions if len(rs := [r for r in rows if r["precision"] == p]) >= 3}
    if not fitted:
        print(f"step_time_model: error: {len(rows)} rows measured before the deadline: too few to fit", file=sys.stderr)
        return 1
    shipped_rates = {p: machine_speed(device, p) for p in precisions}
    fitted_s = lambda r: fitted[r["precision"]].seconds(Work(r["flops"], r["bytes_written"], r["ops"]))  # noqa: E731
    shipped_s = lambda r: shipped_rates[r["precision"]].seconds(Work(r["flops"], r["bytes_written"], r["ops"]))  # noqa: E731
    rows = [r for r in rows if r["precision"] in fitted]
    for r in rows:
        r["fitted_s"], r["shipped_s"] = fitted_s(r), shipped_s(r)
    errors = sorted(abs(r["shipped_s"] / r["measured_s"] - 1) for r in rows)
    fitted_plans, shipped_plans = plans(rows, fitted_s), plans(rows, shipped_s)
    by_plan = lambda p: p["model"]  # noqa: E731  (pairs of whole plans of one network)
    agreement = {"ranking_agreement_fitted": ranking_agreement(rows, fitted_s),
                 "ranking_agreement_shipped": ranking_agreement(rows, shipped_s),
                 "plans_ranked_right_fitted": ranking_agreement(fitted_plans, lambda p: p["predicted_s"], by_plan),
                 "plans_ranked_right_shipped": ranking_agreement(shipped_plans, lambda p: p["predicted_s"], by_plan)}
    name = args.name or (f"step_time_model_cuda-{slug(gpu)}" if gpu else f"step_time_model_{'_'.join(precisions)}")
    payload = {"device": args.device, "gpu": gpu, "precisions": precisions, "quick": args.quick,
               "fitted": {p: _rates_dict(s) for p, s in fitted.items()},
               "shipped": {p: {**_rates_dict(s), "source": s.source} for p, s in shipped_rates.items()},
               "shipped_median_relative_error": statistics.median(errors), "shipped_max_relative_error": errors[-1],
               **agreement, "stopped_at_deadline": time.monotonic() > deadline, "plans": fitted_plans, "rows": rows}
    if args.rates_out:
        key = gpu or "cpu"  # on the CPU only the code path is exercised: the package never reads a "cpu" entry
        rates = merged_rates_file(key, fitted, f"benchmarks/results/{name}.json", agreement)
        Path(args.rates_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.rates_out).write_text(json.dumps(rates, indent=2) + "\n")
        payload["rates_file"] = {"path": str(args.rates_out), "gpu": key, "install": f"cp {args.rates_out} {RATES_FILE.relative_to(RATES_FILE.parents[2])}"}
    write_results(name, payload, _markdown(payload, rows, fitted), output_folder(args))
    print(_snippet(payload), file=sys.stderr)
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _markdown(payload: dict, rows: list[dict], fitted: dict[str, MachineSpeed]) -> str:
    where = payload["gpu"] or f"CPU, {torch.get_num_threads()} torch thread(s)"
    rates = "; ".join(f"{p}: F = {s.flops_per_s / 1e12:.3g} TFLOP/s, B = {s.bytes_per_s / 1e9:.3g} GB/s, "
                      f"L = {1e6 * s.seconds_per_op:.2f} us/op" for p, s in fitted.items())
    lines = [[f"{r['model']} {r['options'] or ''} b{r['batch']}", r["module"], "on" if r["checkpoint_blocks"] else "off",
              r["micro_batch"] or "-", r["precision"], f"{1e3 * r['measured_s']:.2f}", f"{1e3 * r['fitted_s']:.2f}",
              f"{1e3 * r['shipped_s']:.2f}"] for r in rows]
    return (f"{where}, {len(rows)} module steps{' (stopped at the deadline)' if payload['stopped_at_deadline'] else ''}. "
            f"Fitted here: {rates}. Shipped rates (edgetrgl/planning/speed.py): median error "
            f"{_pct(payload['shipped_median_relative_error'])}, max {_pct(payload['shipped_max_relative_error'])}. "
            f"Pairs of one module's options ranked right: fitted {_pct(payload['ranking_agreement_fitted'])}, shipped "
            f"{_pct(payload['ranking_agreement_shipped'])}; pairs of whole plans (options summed over a network's "
            f"modules): fitted {_pct(payload['plans_ranked_right_fitted'])}, shipped {_pct(payload['plans_ranked_right_shipped'])}.\n\n"
            + table(["model", "module", "checkpointing", "micro-batch", "precision", "measured ms", "fitted ms", "shipped ms"], lines))


def _snippet(payload: dict) -> str:
    """What to change in the package to ship the fit."""
    text = ["step_time_model: fitted rates"]
    for p, r in payload["fitted"].items():
        text.append(f"  {p}: MachineSpeed(flops_per_s={r['flops_per_s'] or float('inf'):.3g}, "
                    f"bytes_per_s={r['bytes_per_s'] or float('inf'):.3g}, seconds_per_op={r['seconds_per_op']:.3g})")
    if "rates_file" in payload:
        text.append(f"  ship them: {payload['rates_file']['install']}")
    return "\n".join(text)


if __name__ == "__main__":
    sys.exit(main())
