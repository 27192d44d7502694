"""The fit step: ``benchmarks/step_time_model.py`` on the device, its rates and how well they rank plans.

The script writes ``step_time_model_<device>.json/.md`` into the results folder and ``cuda_rates.json``
(``edgetrgl/planning/cuda_rates.json``'s next version, this GPU's fit added) beside them.
"""

from __future__ import annotations

import time
from typing import Any

from _runs import child_json


def run_fit(run) -> None:
    p = run.profile
    out = run.json_path.parent
    name = run.json_path.stem.replace("gpu-", "step_time_model_cuda-", 1) if run.device == "cuda" \
        else f"step_time_model_{run.json_path.stem}"
    rates = out / f"{run.json_path.stem}-cuda_rates.json"
    deadline_s = max(5.0, run.part_deadline - time.monotonic() - 15.0)  # room to fit and write
    cmd = [run.python, str(run.root / "benchmarks" / "step_time_model.py"), "--device", run.device,
           "--precision", "fp32,bf16", "--deadline-s", f"{deadline_s:.0f}", "--out", str(out), "--name", name,
           "--rates-out", str(rates), *p.fit_args]
    section: dict[str, Any] = {"command": " ".join(cmd[1:]).replace(str(run.root) + "/", "")}
    run.results["fit"] = section
    result = child_json(run, cmd, section, "fit: step_time_model.py", out / f"{name}.json")
    if result is None:
        return
    keys = ("fitted", "shipped", "ranking_agreement_fitted", "ranking_agreement_shipped", "plans_ranked_right_fitted",
            "plans_ranked_right_shipped", "shipped_median_relative_error", "stopped_at_deadline", "gpu", "rates_file")
    section.update({k: result.get(k) for k in keys}, rows=len(result["rows"]), results_file=f"{name}.json",
                   rates_file_written=rates.name, status="done")
    run.log(f"fit: {len(result['rows'])} module steps; pairs of options ranked right: fitted "
            f"{_pct(result['ranking_agreement_fitted'])} (shipped {_pct(result['ranking_agreement_shipped'])}); whole plans: "
            f"fitted {_pct(result['plans_ranked_right_fitted'])} (shipped {_pct(result['plans_ranked_right_shipped'])}); "
            f"rates: {rates.name} [{section['wall_s']:.0f} s]")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
