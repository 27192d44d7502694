"""Each bench method's accuracy cost, read from our own Fashion-MNIST study (benchmarks/accuracy/fashionmnist).

The study trained ResNet-20 on Fashion-MNIST, K = 4, and its ``results/runs.jsonl`` holds one line
per finished run. A bench method's cost is the paired difference (by seed, last module, test
accuracy, mean ± 95% interval) of the study method it maps to against e2e:

- sequential VanGL and TRGL: each trained until its validation accuracy stopped improving, at the
  lr chosen on the validation split (part ``plateau``, 10% of the set). Until a method's sweep has
  converged, and for the other regimes and objectives, the full set at 1 epoch per module (part
  ``full``), and the label says which;
- the baselines (e2e, checkpoint, offload) and ``+ckpt`` compute e2e's or the method's own
  gradients exactly, so they cost what their base costs;
- ``+mbN`` is exact but for BatchNorm, which normalises each micro-batch: its effect is the study's
  5-epoch runs at equal memory with micro-batches of 16 against the same method without (part
  ``equal_memory``: e2e and sequential TRGL), named as measured at 16 where N is not 16;
- ``+bf16``/``+fp16``: not measured.

    from _accuracy_cost import accuracy_costs
    accuracy_costs(["e2e", "sequential-trgl+mb8"])["sequential-trgl+mb8"].label
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "accuracy"))  # the study's own rules

import fashionmnist_plateau as plateau  # noqa: E402
from _study import read_rows  # noqa: E402

from edgetrgl.bench.variants import parse_method  # noqa: E402
from edgetrgl.plots import mean_ci95  # noqa: E402

RUNS = Path(__file__).resolve().parent / "accuracy" / "fashionmnist" / "results" / "runs.jsonl"
FALLBACK = "full"  # the full 60,000 images, K = 4, 1 epoch per module, e2e / VanGL / TRGL / the objectives
MICRO = "equal_memory"  # 10%, 5 epochs, with and without micro-batches of MICRO_SIZE
MICRO_SIZE = 16
SOURCE_TEXT = ("Fashion-MNIST study, ResNet-20, K=4, last module, paired by seed against e2e: sequential VanGL and "
               "TRGL trained to their plateau (10%, lr chosen on validation) where converged, else the full set at "
               "1 epoch per module; micro-batches: its equal-memory runs at 16")


@dataclass(frozen=True)
class AccuracyCost:
    """Test accuracy of the study's run of this method against e2e's, paired by seed."""

    method: str  # the bench method
    study_method: str | None  # the study's method it maps to; None where the study has none
    accuracy: float | None  # mean over seeds, last module
    delta_vs_e2e: float | None  # accuracy - e2e's, in points (mean of the paired differences)
    half_width: float  # of its 95% interval, in points (nan: one seed, or not paired)
    seeds: int
    source: str  # "converged" or "1 epoch per module"
    micro: tuple[int, int, float, float] | None = None  # micro-batch, measured at, points, half-width
    caveat: str = ""  # what was not measured

    @property
    def _delta(self) -> str:
        return _pm(self.delta_vs_e2e, self.half_width)

    @property
    def short(self) -> str:
        """A label short enough for a chart point (two lines at most)."""
        if self.delta_vs_e2e is None:
            return "accuracy: not measured"
        text = "accuracy = e2e" if self.study_method == "e2e" else f"accuracy {self._delta} pt ({self.source})"
        extra = ""
        if self.micro is not None:
            size, at, mean, half = self.micro
            extra = f"micro-batches{'' if size == at else f' (at {at})'}: {_pm(mean, half)} pt"
        elif "micro-batch" in self.caveat:
            extra = "BN per micro-batch: ?"
        return text + (f"\n{extra}" if extra else "")

    @property
    def micro_text(self) -> str:
        if self.micro is None:
            return ""
        size, at, mean, half = self.micro
        return (f"BatchNorm per micro-batch of {size}{'' if size == at else f' (measured at {at})'}: "
                f"{_pm(mean, half)} pt against the same runs without micro-batches")

    @property
    def label(self) -> str:
        """A label for a table cell."""
        if self.delta_vs_e2e is None:
            return "accuracy not measured" + (f" ({self.caveat})" if self.caveat else "")
        text = "= e2e (exact)" if self.study_method == "e2e" else \
            f"{self._delta} pt vs e2e ({self.source}, {self.seeds} seeds)"
        return "; ".join(t for t in (text, self.micro_text, self.caveat) if t)


def _pm(mean: float, half: float) -> str:
    return f"{mean:+.1f}" + ("" if math.isnan(half) else f" ± {half:.1f}")


def _last_by_seed(rows: list[dict]) -> dict[int, float]:
    return {r["seed"]: r["last"] for r in rows}


def _paired(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean and 95% half-width (points) of a - b over the seeds both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return math.nan, math.nan, 0
    mean, half = mean_ci95([100 * (a[s] - b[s]) for s in seeds])
    return mean, half, len(seeds)


def _study_rows(rows: list[dict], part: str, regime: str, method: str) -> dict[int, float]:
    return _last_by_seed([r for r in rows if r["part"] == part and r["recipe"] == "ours" and r["regime"] == regime
                          and r["method"] == method])


def _base_runs(rows: list[dict], regime: str, objective: str) -> tuple[dict[int, float], dict[int, float], str]:
    """(this method's, e2e's) last-module accuracy by seed, and which runs they are."""
    if regime == "sequential" and objective in plateau.METHODS:
        mine, e2e = plateau.converged_rows(objective, rows)[1], plateau.converged_rows("e2e", rows)[1]
        if mine and e2e:
            return _last_by_seed(mine), _last_by_seed(e2e), "converged"
    e2e = _study_rows(rows, FALLBACK, "e2e", "e2e")
    return (e2e if objective == "e2e" else _study_rows(rows, FALLBACK, regime, objective)), e2e, "1 epoch per module"


def _micro_effect(rows: list[dict], regime: str, objective: str, micro_batch: int) -> tuple | None:
    """BatchNorm on micro-batches: the equal-memory runs with micro-batches of 16 against the same without,
    as (micro_batch, MICRO_SIZE, points, half-width); None where the study has no such pair."""
    with_mb = _study_rows(rows, MICRO, regime, f"{objective}-mb{MICRO_SIZE}")
    without = _study_rows(rows, MICRO, regime, objective)
    mean, half, n = _paired(with_mb, without)
    return None if n == 0 else (micro_batch, MICRO_SIZE, mean, half)


def accuracy_costs(methods: list[str], path: Path = RUNS) -> dict[str, AccuracyCost]:
    """The accuracy cost of every bench method in ``methods`` (see the module's docstring)."""
    rows = read_rows(path)
    costs = {}
    for name in methods:
        spec = parse_method(name)
        regime, objective = ("e2e", "e2e") if spec.is_baseline else spec.base.split("-", 1)
        micro = _micro_effect(rows, regime, objective, spec.micro_batch) if spec.micro_batch else None
        caveats = []
        if spec.micro_batch and micro is None:
            caveats.append(f"BatchNorm per micro-batch of {spec.micro_batch}: not measured")
        if spec.precision != "fp32":
            caveats.append(f"{spec.precision}: not measured")
        mine, e2e, source = _base_runs(rows, regime, objective)
        if not mine or not e2e:
            costs[name] = AccuracyCost(name, None, None, None, math.nan, 0, source, micro,
                                       "; ".join(caveats) or f"no {regime} {objective} run")
            continue
        mean, half, n = _paired(mine, e2e) if objective != "e2e" else (0.0, math.nan, len(mine))
        if n == 0:  # no seed in common: the difference of the means, no interval
            mean, half, n = 100 * (sum(mine.values()) / len(mine) - sum(e2e.values()) / len(e2e)), math.nan, len(mine)
        accuracy = sum(mine.values()) / len(mine)
        costs[name] = AccuracyCost(name, objective, accuracy, mean, half, n, source, micro, "; ".join(caveats))
    return costs
