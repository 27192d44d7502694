"""Greedy training stagnates, TRGL cures it? Block-wise ResNet-20 on the bundled mnist5k sample.

Block-wise training (one residual block per module) of a CIFAR ResNet-20 (9 modules) at several
training-set sizes, VanGL against TRGL, sequential / multilap / parallel, and end-to-end on the same
network; a 27-module ResNet-56 (width 8) for the per-module curves; a tau x schedule sweep; a
learning-rate check; an epochs check on the default ``edgetrgl train`` setting and a short tau sweep
on it. Protocol (fixed before any result was seen; mnist5k/README.md): library defaults, augmentation
off, host cache, the same optimizer steps per module at every size (64: 2 epochs of the 4,000 images),
multilap splitting them over 2 laps, parallel and e2e the same epochs in total; the test set is the
fixed 1,000 images, train subsets stratified and drawn by the seed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from _study import fmt, paired

from edgetrgl.data import load_dataset
from edgetrgl.plots import mean_ci95, plot_module_curves

FOLDER = Path(__file__).resolve().parent / "mnist5k"
RESULTS, README, FIGURES = FOLDER / "results", FOLDER / "README.md", FOLDER / "figures"
FRACTIONS = (0.01, 0.02, 0.05, 0.10, 0.25, 1.0)
REGIME_FRACTIONS = (0.02, 1.0)  # multilap and parallel: the small end and the full set
TAU_FRACTION = 0.02
TAUS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0, 5000.0)
DEFAULT_TAUS = (0.3, 3.0, 10.0, 100.0)  # tau 1 is in the "epochs" part (epochs=2 is the default)
STEPS = 64  # optimizer steps per module (= 2 epochs of the full 4,000 images at batch 128)
BASE = dict(model="resnet20", modules=9, dataset="mnist5k", batch_size=128, lr=0.05, augment=False,
            tau=1.0, tau_schedule="double", device="cpu", out="")
SEQ_V, SEQ_T, E2E = ("sequential", "vangl"), ("sequential", "trgl"), ("e2e", "e2e")


def train_size(fraction: float) -> int:
    """Images in the stratified mnist5k training subset (400 per class, round(fraction * 400) kept)."""
    return 10 * max(1, round(fraction * 400))


def cell(part: str, seed: int, fraction: float, regime: str, method: str = "trgl", steps: int = STEPS, **changes) -> dict:
    """One training run: an id and the TrainConfig fields; epochs give about ``steps`` steps per module."""
    cfg = {**BASE, "seed": seed, "train_fraction": fraction, "regime": regime, "method": method, **changes}
    epochs = max(1, round(steps / math.ceil(train_size(fraction) / cfg["batch_size"])))
    if regime == "multilap":
        cfg["laps"] = 2
        epochs = max(1, epochs // 2)
    cfg.setdefault("epochs", epochs)
    cfg["cache"] = "host" if regime in ("sequential", "multilap") else "auto"
    if regime == "e2e":  # one module, no transport term: the method field is not used
        cfg["method"], method = "vangl", "e2e"
    keys = ("model", "model_options", "modules", "lr", "tau", "tau_schedule", "epochs", "epochs_step")
    tag = ",".join(f"{k}={cfg[k]}" for k in keys if k in changes)
    return {"id": f"{part}|{regime}|{method}|f={fraction}|seed={seed}" + (f"|{tag}" if tag else ""),
            "part": part, "config": cfg}


def _cells(part: str, seed: int, quick: bool) -> list[dict]:
    fractions, steps = ((0.01, 1.0), 4) if quick else (FRACTIONS, STEPS)
    small = dict(model_options={"width": 4}) if quick else {}
    one = lambda f, regime, method, **kw: cell(part, seed, f, regime, method, steps, **{**small, **kw})  # noqa: E731
    if part == "core":
        return [one(f, r, m) for f in fractions for r, m in (SEQ_V, SEQ_T, E2E)]
    if part == "regimes":
        return [one(f, r, m) for f in ((0.02,) if quick else REGIME_FRACTIONS) for r in ("multilap", "parallel")
                for m in ("vangl", "trgl")]
    if part == "curves":  # 27 one-block modules: where stagnation and collapse show most
        deep = dict(model="resnet56", model_options={"width": 4 if quick else 8}, modules=27)
        return [cell(part, seed, TAU_FRACTION, "sequential", m, steps, **deep) for m in ("vangl", "trgl")]
    if part == "tau":  # the multiplier variant ignores tau: lambda_k starts at 1 and grows by h * CE every s steps
        return [one(TAU_FRACTION, "sequential", "trgl", tau=t, tau_schedule=s) for s in ("constant", "double")
                for t in ((0.1, 100.0) if quick else TAUS)] + [one(TAU_FRACTION, "sequential", "trgl", tau_schedule="multiplier")]
    if part == "lr":  # the paper trains module-wise with a small lr: does it change the comparison?
        return [one(f, r, m, lr=0.01) for f in ((0.01,) if quick else (0.01, 0.02)) for r, m in (SEQ_V, SEQ_T, E2E)]
    if part == "epochs":  # the default `edgetrgl train` setting: resnet20, K = 4, full set
        grid = ((1, 0),) if quick else ((1, 0), (2, 0), (4, 0), (1, 1))
        return [one(1.0, "sequential", m, modules=4, epochs=e, epochs_step=s) for e, s in grid for m in ("vangl", "trgl")]
    # tau_default: the tau sweep again, on the default `edgetrgl train` setting
    return [one(1.0, "sequential", "trgl", modules=4, epochs=1 if quick else 2, tau=t) for t in ((10.0,) if quick else DEFAULT_TAUS)]


_WHAT = {"core": "VanGL vs TRGL vs e2e at six training-set sizes", "regimes": "multilap and parallel at 2% and 100%",
         "curves": "ResNet-56 width 8, 27 modules: per-module curves", "tau": "tau x schedule at 2%",
         "lr": "lr 0.01 against the default 0.05", "epochs": "epochs on the default setting (K=4)",
         "tau_default": "tau on the default setting"}
_SEEDS = {"core": 3, "regimes": 3, "curves": 3, "tau": 2, "lr": 3, "epochs": 2, "tau_default": 2}
PARTS = {p: (_SEEDS[p], 0, what, lambda seed, epochs, quick, p=p: _cells(p, seed, quick)) for p, what in _WHAT.items()}


def load_data(cfg, cell: dict, data_dir, cache: dict):
    key = (cfg.train_fraction, cfg.seed)
    if key not in cache:
        cache[key] = load_dataset("mnist5k", train_fraction=cfg.train_fraction, seed=cfg.seed, augment=cfg.augment)
    return cache[key]


def labels(cell: dict, cfg, spec, cache: dict) -> dict:
    return {}  # the config says it all


class Runs:
    """Finished cells: select by part and config fields, get ``{seed: value}``."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def select(self, part: str, **fields) -> list[dict]:
        return [r for r in self.rows if r["part"] == part and all(r["config"].get(k) == v for k, v in fields.items())]

    def by_seed(self, part: str, key: str = "last", **fields) -> dict[int, float]:
        return {r["config"]["seed"]: r[key] for r in self.select(part, **fields)}


def _f(d: dict) -> str:
    return fmt(list(d.values()), count=True)


def _p(a: dict, b: dict) -> str:
    return paired(a, b, count=True)


def _rm(regime: str, method: str) -> dict:
    return dict(regime="e2e") if regime == "e2e" else dict(regime=regime, method=method)


def core_table(runs: Runs) -> str:
    lines = ["| train images (fraction) | epochs / module | VanGL last | TRGL last | e2e | VanGL best | TRGL best "
             "| TRGL − VanGL (last) | TRGL − e2e (last) |", "|---|---|---|---|---|---|---|---|---|"]
    for f in FRACTIONS:
        some = runs.select("core", train_fraction=f)
        if not some:
            continue
        vl, tl, el = (runs.by_seed("core", "last", train_fraction=f, **_rm(*s)) for s in (SEQ_V, SEQ_T, E2E))
        vb, tb = (runs.by_seed("core", "best", train_fraction=f, **_rm(*s)) for s in (SEQ_V, SEQ_T))
        lines.append(f"| {some[0]['train_size']} ({100 * f:g}%) | {some[0]['config']['epochs']} | {_f(vl)} | {_f(tl)} | "
                     f"{_f(el)} | {_f(vb)} | {_f(tb)} | {_p(tl, vl)} | {_p(tl, el)} |")
    return "\n".join(lines) + "\n"


def regimes_table(runs: Runs) -> str:
    lines = ["| train images | regime | VanGL last | TRGL last | VanGL best | TRGL best | TRGL − VanGL (last) |",
             "|---|---|---|---|---|---|---|"]
    for f in REGIME_FRACTIONS:
        for regime in ("sequential", "multilap", "parallel"):
            part, sel = "core" if regime == "sequential" else "regimes", dict(train_fraction=f, regime=regime)
            vl, tl = (runs.by_seed(part, "last", method=m, **sel) for m in ("vangl", "trgl"))
            vb, tb = (runs.by_seed(part, "best", method=m, **sel) for m in ("vangl", "trgl"))
            if vl or tl:
                size = runs.select(part, **sel)[0]["train_size"]
                lines.append(f"| {size} ({100 * f:g}%) | {regime} | {_f(vl)} | {_f(tl)} | {_f(vb)} | {_f(tb)} | {_p(tl, vl)} |")
    return "\n".join(lines) + "\n"


def tau_sweep(runs: Runs) -> dict:
    """tau -> {"last"|"best": {schedule: {seed: accuracy}}}, with the multiplier schedule and VanGL."""
    agg = {}
    for tau in TAUS:
        cells = {s: runs.select("tau", tau=tau, tau_schedule=s) for s in ("constant", "double")}
        if any(cells.values()):
            agg[tau] = {k: {s: {r["config"]["seed"]: r[k] for r in c} for s, c in cells.items()} for k in ("last", "best")}
    mult = runs.select("tau", tau_schedule="multiplier")
    agg["multiplier"] = {k: {r["config"]["seed"]: r[k] for r in mult} for k in ("last", "best")}
    agg["vangl"] = {k: runs.by_seed("core", k, train_fraction=TAU_FRACTION, regime="sequential", method="vangl")
                    for k in ("last", "best")}
    return agg


def tau_table(runs: Runs) -> str:
    agg = tau_sweep(runs)
    vangl = agg["vangl"]["last"]
    lines = ["| tau | constant: last | constant: best | double: last | double: best | double − VanGL (last, paired) |",
             "|---|---|---|---|---|---|"]
    for tau in (t for t in TAUS if t in agg):
        last, best = agg[tau]["last"], agg[tau]["best"]
        lines.append(f"| {tau:g} | {_f(last['constant'])} | {_f(best['constant'])} | {_f(last['double'])} | "
                     f"{_f(best['double'])} | {_p(last['double'], vangl)} |")
    ml, mb = agg["multiplier"]["last"], agg["multiplier"]["best"]
    lines.append(f"| multiplier (tau unused; lambda from 1, +CE every 50 steps) | — | — | {_f(ml)} | {_f(mb)} | {_p(ml, vangl)} |")
    lines.append(f"| VanGL (no transport), same cells' seeds from the core grid | — | — | {_f(vangl)} | "
                 f"{_f(agg['vangl']['best'])} | 0 |")
    return "\n".join(lines) + "\n"


def lr_table(runs: Runs) -> str:
    lines = ["| train images | lr | VanGL last | TRGL last | e2e | VanGL best | TRGL best | TRGL − VanGL (last) | TRGL − e2e (last) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in (0.01, 0.02):
        for part, lr in (("core", 0.05), ("lr", 0.01)):
            vl, tl, el = (runs.by_seed(part, "last", train_fraction=f, lr=lr, **_rm(*s)) for s in (SEQ_V, SEQ_T, E2E))
            vb, tb = (runs.by_seed(part, "best", train_fraction=f, lr=lr, **_rm(*s)) for s in (SEQ_V, SEQ_T))
            if vl or tl:
                lines.append(f"| {train_size(f)} ({100 * f:g}%) | {lr} | {_f(vl)} | {_f(tl)} | {_f(el)} | {_f(vb)} | "
                             f"{_f(tb)} | {_p(tl, vl)} | {_p(tl, el)} |")
    return "\n".join(lines) + "\n"


def epochs_table(runs: Runs) -> str:
    lines = ["| epochs | epochs_step | epochs per module | VanGL last | TRGL last | VanGL best | TRGL best | "
             "TRGL − VanGL (last) | wall time TRGL (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for e, s in ((1, 0), (2, 0), (4, 0), (1, 1)):
        sel = dict(epochs=e, epochs_step=s)
        vl, tl = (runs.by_seed("epochs", "last", method=m, **sel) for m in ("vangl", "trgl"))
        vb, tb = (runs.by_seed("epochs", "best", method=m, **sel) for m in ("vangl", "trgl"))
        if vl or tl:
            times = [r["wall_time_s"] for r in runs.select("epochs", method="trgl", **sel)]
            lines.append(f"| {e} | {s} | {', '.join(str(e + k * s) for k in range(4))} | {_f(vl)} | {_f(tl)} | {_f(vb)} | "
                         f"{_f(tb)} | {_p(tl, vl)} | {sum(times) / max(len(times), 1):.0f} |")
    return "\n".join(lines) + "\n"


def tau_default_table(runs: Runs) -> str:
    """tau on the default setting; tau 1 and VanGL come from the epochs part (epochs=2 is the default)."""
    default = dict(epochs=2, epochs_step=0)
    vangl = runs.by_seed("epochs", "last", method="vangl", **default)
    lines = ["| tau (double schedule) | TRGL last | TRGL best | TRGL − VanGL (last, paired) |", "|---|---|---|---|"]
    for tau in sorted({*DEFAULT_TAUS, 1.0}):
        part, sel = ("epochs", default) if tau == 1.0 else ("tau_default", {})
        last, best = (runs.by_seed(part, k, method="trgl", tau=tau, **sel) for k in ("last", "best"))
        if last:
            lines.append(f"| {tau:g} | {_f(last)} | {_f(best)} | {_p(last, vangl)} |")
    if vangl:
        lines.append(f"| VanGL | {_f(vangl)} | {_f(runs.by_seed('epochs', 'best', method='vangl', **default))} | 0 |")
    return "\n".join(lines) + "\n"


def timing_table(runs: Runs) -> str:
    per_part = defaultdict(lambda: [0, 0.0, 0.0])
    for r in runs.rows:
        p = per_part[r["part"]]
        p[0], p[1], p[2] = p[0] + 1, p[1] + r["wall_time_s"], p[2] + r["other_busy_cores"] * r["wall_time_s"]
    lines = ["| part | cells | wall time (min) | other processes' load (mean busy cores) |", "|---|---|---|---|"]
    lines += [f"| {part} | {n} | {wall / 60:.1f} | {busy / max(wall, 1e-9):.2f} |" for part, (n, wall, busy) in per_part.items()]
    lines.append(f"| **all** | {len(runs.rows)} | **{sum(p[1] for p in per_part.values()) / 60:.1f}** | |")
    return "\n".join(lines) + "\n"


TITLES = {"core": "Block-wise ResNet-20 (9 modules), sequential, VanGL vs TRGL vs e2e",
          "regimes": "Regimes: sequential, multilap (2 laps), parallel",
          "tau": f"tau x schedule sweep (sequential, {train_size(TAU_FRACTION)} training images)",
          "lr": "Learning rate check: library default 0.05 vs 0.01",
          "epochs": "Epochs on the default setting (resnet20, K = 4, full 4,000 images, tau 1 double)",
          "tau_default": "tau on the default setting (resnet20, K = 4, full 4,000 images, 2 epochs per module)",
          "wall_time": "Wall time"}


def tables(rows: list[dict], results: Path) -> dict[str, str]:
    """Each table by name, in the order tables.md shows them (and the README's ``generated`` blocks)."""
    runs = Runs(rows)
    made = {"core": core_table, "regimes": regimes_table, "tau": tau_table, "lr": lr_table, "epochs": epochs_table,
            "tau_default": tau_default_table, "wall_time": timing_table}
    return {name: make(runs) for name, make in made.items()}


def tables_md(rows: list[dict], made: dict[str, str], sessions: list[dict]) -> str:
    return "".join(f"### {TITLES[name]}\n\n{body}\n" for name, body in made.items())


def summary(rows: list[dict]) -> dict:
    runs = Runs(rows)
    core = {}
    for f in FRACTIONS:
        got = {name: runs.by_seed("core", k, train_fraction=f, **_rm(*s)) for name, k, s in
               (("vangl_last", "last", SEQ_V), ("trgl_last", "last", SEQ_T), ("e2e", "last", E2E),
                ("vangl_best", "best", SEQ_V), ("trgl_best", "best", SEQ_T))}
        if runs.select("core", train_fraction=f):
            core[str(f)] = got
    return {"core": core, "tau": {str(k): v for k, v in tau_sweep(runs).items()}}


def figures(rows: list[dict], folder: Path) -> list[Path]:
    """Per-module curves (VanGL vs TRGL, e2e as a line) at each size, of the 27-module net, and the tau sweep."""
    runs, written = Runs(rows), []

    def curves(part, **sel):
        return [r["test_accuracy"] for r in sorted(runs.select(part, **sel), key=lambda r: r["config"]["seed"])]

    for f in FRACTIONS:
        lines = {n: curves("core", train_fraction=f, regime="sequential", method=m) for n, m in (("VanGL", "vangl"), ("TRGL", "trgl"))}
        if not any(lines.values()):
            continue
        e2e = [r["last"] for r in runs.select("core", train_fraction=f, regime="e2e")]
        size = runs.select("core", train_fraction=f)[0]["train_size"]
        written.append(plot_module_curves({k: v for k, v in lines.items() if v}, folder / f"curves_resnet20_{size}.png",
                                          title=f"ResNet-20 block-wise (9 modules), sequential, {size} training images "
                                                f"({100 * f:g}% of mnist5k)",
                                          references={f"e2e (mean of {len(e2e)})": sum(e2e) / len(e2e)} if e2e else None))
    deep = {n: curves("curves", method=m) for n, m in (("VanGL", "vangl"), ("TRGL", "trgl"))}
    if any(deep.values()):
        first = runs.select("curves")[0]
        size, width = first["train_size"], first["config"]["model_options"]["width"]
        written.append(plot_module_curves({k: v for k, v in deep.items() if v}, folder / f"curves_resnet56w{width}_{size}.png",
                                          title=f"ResNet-56 width {width}, block-wise (27 modules), sequential, "
                                                f"{size} training images"))
    return written + _tau_figure(tau_sweep(runs), folder)


def _tau_figure(agg: dict, folder: Path) -> list[Path]:
    taus = [t for t in TAUS if t in agg]
    if not taus:
        return []
    from edgetrgl.plots import new_figure

    fig = new_figure(figsize=(7.0, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for schedule in ("constant", "double"):
        pts = [(t, mean_ci95([100 * v for v in agg[t]["last"][schedule].values()])) for t in taus if agg[t]["last"][schedule]]
        if pts:
            means = [p[1][0] for p in pts]
            half = [0.0 if math.isnan(p[1][1]) else p[1][1] for p in pts]
            # clip the bars to [0, 100]: with 2 seeds the t-interval (t = 12.7) can pass both ends
            yerr = [[min(h, m) for m, h in zip(means, half)], [min(h, 100 - m) for m, h in zip(means, half)]]
            ax.errorbar([p[0] for p in pts], means, yerr=yerr, marker="o", capsize=3, label=f"TRGL, {schedule} schedule")
    for name, style in (("multiplier", "-."), ("vangl", "--")):
        values = list(agg.get(name, {}).get("last", {}).values())
        if values:
            mean = 100 * sum(values) / len(values)
            ax.axhline(mean, linestyle=style, color="0.3" if name == "vangl" else "tab:green",
                       label=f"{'TRGL, multiplier schedule' if name == 'multiplier' else 'VanGL'}: {mean:.1f}%")
    ax.set_xscale("log")
    ax.set_xlabel("tau (the double schedule uses tau/2 for the first half of the modules)")
    ax.set_ylabel("last-module test accuracy (%)")
    ax.set_title(f"tau sensitivity: ResNet-20 block-wise, sequential, {train_size(TAU_FRACTION)} training images", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / "tau_sweep.png")
    return [folder / "tau_sweep.png"]
