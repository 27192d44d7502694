"""Each bench method's accuracy cost, read from our own Fashion-MNIST study (benchmarks/accuracy/fashionmnist).

The study trained ResNet-20 on Fashion-MNIST, K = 4, our recipe; its ``results/runs.jsonl`` holds one
line per finished run. A bench method maps to a study method: the baselines (e2e, checkpoint,
offload) and ``+ckpt`` compute e2e's or the method's own gradients exactly, so they cost what
their base costs; ``+mbN`` is exact but for BatchNorm, which normalises each micro-batch, and the
study has no micro-batched run, so its cost is "not measured"; so is ``+bf16``/``+fp16``.

    from _accuracy_cost import accuracy_costs
    accuracy_costs(["e2e", "sequential-trgl+mb8"])["sequential-trgl+mb8"].label  # "+0.1 pt vs e2e; BatchNorm ..."
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from edgetrgl.bench.variants import parse_method

RUNS = Path(__file__).resolve().parent / "accuracy" / "fashionmnist" / "results" / "runs.jsonl"
PART = "full"  # the full 60,000 images, K = 4, 1 epoch per module, e2e / VanGL / TRGL
PART_TEXT = "Fashion-MNIST study, ResNet-20, full set, K=4, 1 epoch per module, our recipe, last module"


@dataclass(frozen=True)
class AccuracyCost:
    """Test accuracy of the study's run of this method against e2e's, same part and recipe."""

    method: str  # the bench method
    study_method: str | None  # the study's method it maps to; None where the study has none
    accuracy: float | None  # mean over seeds, last module
    delta_vs_e2e: float | None  # accuracy - e2e's, in points
    seeds: int
    caveat: str  # "" when the mapping is exact

    @property
    def short(self) -> str:
        """A label short enough for a chart point."""
        if self.delta_vs_e2e is None:
            return "accuracy: not measured"
        text = "accuracy = e2e" if self.study_method == "e2e" else f"accuracy {self.delta_vs_e2e:+.1f} pt"
        return text + (" (BN per micro-batch: ?)" if "micro-batch" in self.caveat else "")

    @property
    def label(self) -> str:
        """A short label for a chart or a table cell."""
        if self.delta_vs_e2e is None:
            return "accuracy not measured" + (f" ({self.caveat})" if self.caveat else "")
        text = "= e2e (exact)" if self.study_method == "e2e" else f"{self.delta_vs_e2e:+.1f} pt vs e2e"
        return text + (f"; {self.caveat}" if self.caveat else "")


def study_runs(path: Path = RUNS, part: str = PART) -> dict[tuple[str, str], list[float]]:
    """``{(regime, method): [last-module test accuracy per seed]}`` of one part of the study, our recipe."""
    runs: dict[tuple[str, str], list[float]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["part"] == part and row["recipe"] == "ours":
            runs.setdefault((row["regime"], row["method"]), []).append(row["last"])
    return runs


def accuracy_costs(methods: list[str], path: Path = RUNS, part: str = PART) -> dict[str, AccuracyCost]:
    """The accuracy cost of every bench method in ``methods`` (see the module's docstring)."""
    runs = study_runs(path, part)
    e2e = runs.get(("e2e", "e2e"))
    costs = {}
    for name in methods:
        spec = parse_method(name)
        regime, objective = ("e2e", "e2e") if spec.is_baseline else spec.base.split("-", 1)
        caveats = []
        if spec.micro_batch:
            caveats.append(f"BatchNorm per micro-batch of {spec.micro_batch}: not measured")
        if spec.precision != "fp32":
            caveats.append(f"{spec.precision}: not measured")
        seeds = runs.get((regime, objective))
        if not seeds or not e2e:
            costs[name] = AccuracyCost(name, None, None, None, 0, "; ".join(caveats) or f"no {regime} {objective} run")
            continue
        mean = statistics.mean(seeds)
        costs[name] = AccuracyCost(name, objective, mean, 100 * (mean - statistics.mean(e2e)), len(seeds),
                                   "; ".join(caveats))
    return costs
