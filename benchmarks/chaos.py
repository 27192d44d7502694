"""Chaos run: random faults injected into tiny training runs, restarted as a service would; nothing lost.

Each run is trained by the systemd unit's one command line (``edgetrgl train ... --auto-resume``,
devices/edgetrgl-train.service) on a small ext4 file system on a loop device that the harness can
fill (a real journaling file system: fsync, delayed allocation and ENOSPC as on a device's card). At
instants drawn from the seed it injects, one per launch: SIGKILL at a step, a cache write, a
checkpoint write or rename (the ``edgetrgl._faults`` points) or at a random instant; SIGTERM,
SIGINT or SIGHUP at a random instant (graceful: checkpoint, exit 128 + the signal's number), SIGTERM
while the test set is scored; SIGSTOP then SIGCONT a fraction of a second to a few seconds later
(the launch must finish by itself); the kernel's OOM killer (the launch runs in a memory cgroup
whose limit is lowered under its usage, then lifted); the disk filling up (0 to 600 KB left); a
second process started on the same folder; a cache shard or the checkpoint cut short or with one bit
flipped after a kill (what a power cut or a failing SD card leaves). After each fault it starts the
same command again, as ``Restart=on-failure`` would; after a refusal with exit 2 (which the unit
does not restart) it does what the one-line error says, then starts it again.

The pipeline regime runs under torchrun (2 ranks, ``--max-restarts``) on its own ext4: a rank is
SIGKILLed at a fault point, then again at random instants, and torchrun restarts the group.

Every finished run is compared with an uninterrupted run of the same command: test accuracies,
every tensor of model.pt (``torch.equal``) and the epoch and module records of metrics.jsonl (none
missing, none twice). Figures, per seed, per regime and per fault kind: faults, restarts, identical
runs, differing runs, runs lost (never finished), unexpected outcomes (a traceback, two error lines,
a torn checkpoint, a hang). Each row carries the commit the harness was started from.

    python benchmarks/chaos.py --seeds 0,1,2 --record   # 200 faults per seed, every regime
    python benchmarks/chaos.py --short                  # the suite's check (tests/test_chaos.py)
    python benchmarks/chaos.py --faults 40 --regimes sequential-disk,e2e --seed 3 --results /tmp/c3

Needs root for the loop devices (else a tmpfs; without root neither: the disk-full faults are
skipped) and for the memory cgroup (else no OOM kills); the report says which. Everything borrowed
is given back however the harness ends (SIGTERM, SIGINT, SIGHUP included).
Results, with ``--record``: benchmarks/results/chaos.json and chaos.md (each finished run is appended
to chaos-runs.jsonl as it ends; ``--continue`` keeps the runs already there, and a seed's runs count
towards its faults); ``--results DIR`` writes them to DIR instead; neither prints the figures and
writes nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._chaos_faults import Fault, HarnessStopping, Injector, pipeline_launch, start, stop_all  # noqa: E402
from benchmarks._chaos_system import MemoryCgroup, SmallDisk, exit_deferred, on_exit  # noqa: E402
from benchmarks._common import add_output_args, commit, output_folder, write_results  # noqa: E402

COMMIT = commit()  # the code this process loaded, not what the checkout holds when a row is written

TINY_TOML = 'model_options = { width = 4 }\ndataset_options = { num_train = 256, num_test = 128 }\n'
SINGLE = ["sigkill at a point", "sigkill timed", "sigterm timed", "sigint timed", "sighup timed", "sigterm in evaluation",
          "second writer", "disk full", "corrupt shard", "corrupt checkpoint", "oom kill", "pause"]
MAX_FAULTS_PER_RUN = 6
MAX_CLEAN_LAUNCHES = 3  # after its faults a run must finish within this many plain launches, else it is lost


@dataclass
class Scenario:
    """One regime's command line and the faults that apply to it."""

    name: str
    args: list[str]
    kinds: list[str]
    weight: float = 1.0  # its share of --faults
    torchrun: bool = False


SCENARIOS = [
    Scenario("sequential-disk", ["--regime", "sequential", "--epochs", "2", "--cache", "disk"], SINGLE),
    Scenario("sequential-host", ["--regime", "sequential", "--epochs", "2", "--cache", "host"],
             [k for k in SINGLE if k != "corrupt shard"]),
    Scenario("multilap", ["--regime", "multilap", "--laps", "2", "--epochs", "1", "--cache", "disk"], SINGLE),
    # these two score the test set once, at the end: a SIGTERM there finds no step left to stop at
    Scenario("parallel", ["--regime", "parallel", "--epochs", "3"],
             [k for k in SINGLE if k not in ("corrupt shard", "sigterm in evaluation")]),
    Scenario("e2e", ["--regime", "e2e", "--epochs", "3"], [k for k in SINGLE if k not in ("corrupt shard", "sigterm in evaluation")]),
    Scenario("pipeline", ["--regime", "pipeline", "--epochs", "2", "--dist-timeout", "60"], ["rank sigkill"],
             weight=0.5, torchrun=True),
]
# the suite's short mode: one run, one fault of each kind that can be set up in seconds, each at a fault
# point of its launch rather than at an instant, so that every one fires (a timed one could come after
# its launch had finished). The run's 3 modules train alike, so at half its steps module 1's cache is
# complete: a shard to damage. The signals, the OOM kill, the full disk (nothing left) and the pause come once
# the launch's CLI has installed its handlers; the pause comes last: its launch finishes the run.
SHORT = Scenario("sequential-disk", SCENARIOS[0].args,
                 ["corrupt shard", "sigterm in evaluation", "sigint timed", "sigkill at a point", "sighup timed",
                  "second writer", "corrupt checkpoint", "oom kill", "disk full", "pause"])
SHORT_AT = {"corrupt shard": lambda points: f"step:{max(points.get('step', 2) // 2, 1)}",
            "sigterm in evaluation": lambda points: "evaluate:1",
            "sigkill at a point": lambda points: "checkpoint_write:1",  # half a checkpoint file on disk
            "second writer": lambda points: "step:1",
            "corrupt checkpoint": lambda points: "checkpoint_rename:1",  # an older checkpoint is in place to damage
            **{kind: lambda points: "handlers" for kind in ("sigint timed", "sighup timed", "oom kill", "disk full",
                                                            "pause")}}


class Deck:
    """The fault kinds dealt to one seed's runs: every kind once per shuffled round, so that a short campaign
    covers each kind and a long one injects them alike. A run is dealt the first cards it can take (not every
    regime has a disk cache to damage); what a run did not play (it finished first) goes back on top."""

    def __init__(self, rng: random.Random, kinds: list[str]) -> None:
        self.rng, self.kinds, self.cards = rng, list(dict.fromkeys(kinds)), []

    def deal(self, kinds: list[str], n: int) -> list[str]:
        hand = []
        for _ in range(n):
            if not any(k in kinds for k in self.cards):
                fresh = list(self.kinds)
                self.rng.shuffle(fresh)
                self.cards += fresh
            card = next(k for k in self.cards if k in kinds)
            self.cards.remove(card)
            hand.append(card)
        return hand

    def put_back(self, kinds: list[str]) -> None:
        self.cards[:0] = kinds


def train_command(scn: Scenario, toml: Path, out: Path, seed: int, restarts: int = 0) -> list[str]:
    common = ["train", "--dataset", "synthetic", "--config", str(toml), "--modules", "3", "--batch-size", "64",
              "--device", "cpu", "--quiet", "--no-augment", "--seed", str(seed), *scn.args, "--out", str(out)]
    if scn.torchrun:  # torchrun restarts the ranks itself; --auto-resume is for one process
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "--max-restarts", str(restarts), "--monitor-interval", "0.2", "-m", "edgetrgl", *common]
    return [sys.executable, "-m", "edgetrgl.cli.main", *common, "--auto-resume"]


# ---- references -------------------------------------------------------------------------------
def reference(scn: Scenario, work: Path, toml: Path, seed: int) -> dict:
    """An uninterrupted run of the scenario: its folder, wall time and how often each fault point is reached."""
    out = work / "reference" / f"seed{seed}" / scn.name  # the run's seed is the campaign's
    counts = work / f"counts-{seed}-{scn.name}.json"
    launch = start(train_command(scn, toml, out, seed), work / "logs", {"EDGETRGL_FAULT_COUNTS": str(counts)})
    rc = launch.wait()
    if rc != 0:
        raise SystemExit(f"chaos: the uninterrupted {scn.name} run failed (exit {rc}): {launch.stderr[-2000:]}")
    points: Counter = Counter()
    for path in work.glob(f"counts-{seed}-{scn.name}.json*"):
        for name, n in json.loads(path.read_text()).items():
            points[name] = max(points[name], n)  # per rank under torchrun: the busiest rank
    return {"dir": out, "seconds": launch.seconds, "points": dict(points)}


def compare(ref: Path, run: Path, ordered: bool = True) -> str:
    """"" if ``run`` equals ``ref`` bit for bit (accuracies, weights, metrics records), else the difference."""
    if not (run / "summary.json").exists() or not (run / "model.pt").exists():
        return "the run has no summary.json or model.pt"
    acc = lambda p: [m["test_accuracy"] for m in json.loads((p / "summary.json").read_text())["modules"]]  # noqa: E731
    if acc(ref) != acc(run):
        return f"test accuracies differ: {acc(run)} vs {acc(ref)}"
    wa = torch.load(ref / "model.pt", weights_only=True)["state_dict"]
    wb = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    if wa.keys() != wb.keys():
        return "model.pt holds other tensors"
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    if differ:
        return f"{len(differ)} tensor(s) of model.pt differ, e.g. {differ[0]}"
    ra, rb = records(ref), records(run)
    keys = [r[:4] for r in rb]
    if len(keys) != len(set(keys)):
        return "metrics.jsonl holds a record twice"
    if (ra if ordered else sorted(ra)) != (rb if ordered else sorted(rb)):
        missing = sorted(set(map(str, ra)) - set(map(str, rb)))
        return f"metrics.jsonl records differ ({len(rb)} vs {len(ra)}); missing e.g. {missing[:1]}"
    return ""


EPOCH_KEYS = ("ce", "transport", "train_accuracy", "tau", "lr")


def records(run: Path) -> list[tuple]:
    """The epoch and module records of metrics.jsonl, on their deterministic fields."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["event"] == "epoch":
            out.append(("epoch", r["lap"], r["module"], r["epoch"], *(r[k] for k in EPOCH_KEYS)))
        elif r["event"] == "module":
            out.append(("module", r["lap"], r["module"], None, r["test_accuracy"], r["epochs"], tuple(r["blocks"])))
    return out


# ---- one run under faults ---------------------------------------------------------------------------
def progress(run: Path, ref: Path) -> float:
    """How far the run has got (epoch records written / the reference's), 0..1."""
    try:
        done = sum(1 for r in records(run) if r[0] == "epoch")
    except (OSError, ValueError, KeyError):
        return 0.0
    return min(done / max(sum(1 for r in records(ref) if r[0] == "epoch"), 1), 1.0)


def chaos_run(scn: Scenario, index: int, seed: int, work: Path, where: Path, disk: Path | None,
              cgroup: MemoryCgroup | None, toml: Path, ref: dict, kinds: list[str] | None = None,
              deck: Deck | None = None) -> dict:
    """Train one run (in ``where``) to its end through faults; compare it with the reference. ``disk``: the
    file system to fill (None: no disk-full faults); ``cgroup``: the memory cgroup (None: no OOM kills);
    ``kinds``: the faults in order (the short mode), else 2 to 6 dealt from ``deck`` (or drawn)."""
    rng = random.Random(f"{seed}/{scn.name}/{index}")
    run_dir = where / f"{scn.name}-{index}"
    shutil.rmtree(run_dir, ignore_errors=True)
    log_dir = work / "logs" / f"seed{seed}" / f"{scn.name}-{index}"
    faults: list[Fault] = []
    launches = 0
    usable = [k for k in scn.kinds if not (k == "disk full" and disk is None or k == "oom kill" and cgroup is None)]
    n = rng.randint(2, MAX_FAULTS_PER_RUN)
    planned = kinds or (deck.deal(usable, n) if deck and not scn.torchrun else [rng.choice(usable) for _ in range(n)])
    if "pause" in planned:  # its launch must finish the run: it comes last
        planned = [k for k in planned if k != "pause"] + ["pause"]
    for i, kind in enumerate(planned):
        if (run_dir / "summary.json").exists():
            if deck is not None and not kinds:
                deck.put_back(planned[i:])
            break
        left = 1.0 - progress(run_dir, ref["dir"])
        if kinds:  # a fixed list (the short mode): leave room for the faults still to come
            left /= len(planned) - i
        points = {p: max(1, round(n * left)) for p, n in ref["points"].items()}
        window = ref["seconds"] * max(left, 0.3)  # the startup, then what is left of the training
        if scn.torchrun:
            command = train_command(scn, toml, run_dir, seed, restarts=3)
            got = pipeline_launch(command, run_dir, log_dir, rng, window, points, kills=rng.randint(1, 3))
            launches += 1
        else:
            if (kind == "disk full" and disk is None) or (kind == "oom kill" and cgroup is None):
                continue  # the short mode without a disk to fill (not root) or a memory cgroup: said in the report
            inj = Injector(train_command(scn, toml, run_dir, seed), run_dir, log_dir, rng, window, points,
                           disk if kind == "disk full" else None)
            at = SHORT_AT[kind](ref["points"]) if kinds and kind in SHORT_AT else None
            got = inject(inj, kind, at, cgroup)
            launches += 1 + (kind in ("second writer", "corrupt checkpoint"))
        faults += got
    clean = 0
    while not (run_dir / "summary.json").exists() and clean < MAX_CLEAN_LAUNCHES:
        if scn.torchrun:
            got = pipeline_finish(scn, toml, run_dir, seed, log_dir)
        else:
            got = Injector(train_command(scn, toml, run_dir, seed), run_dir, log_dir, rng, 0, {}, None).clean()
        faults.append(got)
        clean += 1
        launches += 1
    finished = (run_dir / "summary.json").exists()
    difference = compare(ref["dir"], run_dir, ordered=not scn.torchrun) if finished else ""
    fired = [f for f in faults if f.fired]
    row = {"regime": scn.name, "index": index, "seed": seed, "commit": COMMIT, "filesystem": ref["filesystem"],
           "finished": finished, "identical": finished and not difference,
           "difference": difference, "faults": len(fired), "kinds": dict(Counter(f.kind for f in fired)),
           "launches": launches, "restarts": launches - 1 + sum(f.restarts for f in faults),
           "unexpected": [f"{f.kind}: {f.unexpected}" for f in faults if f.unexpected],
           "not_fired": sum(1 for f in faults if not f.fired and f.kind != "none"),
           "log": [f.row() for f in faults]}
    if finished and not difference and not row["unexpected"]:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(log_dir, ignore_errors=True)
    elif where != work / "runs":  # keep the evidence off the small disk
        shutil.copytree(run_dir, work / "failed" / f"seed{seed}" / run_dir.name, dirs_exist_ok=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    return row


def inject(inj: Injector, kind: str, at: str | None = None, cgroup: MemoryCgroup | None = None) -> list[Fault]:
    """One fault of ``kind`` (with a second where it takes one: a damaged file is left by a SIGKILL); ``at``
    (``"point:N"``, or ``"handlers"``: once the CLI is up) puts it there instead of at a drawn instant."""
    got = _inject(inj, kind, at, cgroup)
    return got if isinstance(got, list) else [got]


def _inject(inj: Injector, kind: str, at: str | None, cgroup: MemoryCgroup | None):
    timed = {"sigkill timed": signal.SIGKILL, "sigterm timed": signal.SIGTERM, "sigint timed": signal.SIGINT,
             "sighup timed": signal.SIGHUP}
    if kind == "sigkill at a point":
        return inj.kill_at_point(at)
    if kind in timed:
        return inj.kill_timed(timed[kind], at)
    if kind == "sigterm in evaluation":
        return inj.sigterm_in_evaluation(at)
    if kind == "second writer":
        return inj.second_writer(at)
    if kind == "disk full":
        return inj.disk_full(at)
    if kind == "corrupt shard":
        return inj.corrupt_file("shard", at)
    if kind == "corrupt checkpoint":
        return inj.corrupt_file("checkpoint", at)
    if kind == "oom kill":
        assert cgroup is not None
        return inj.oom_kill(cgroup, at)
    if kind == "pause":
        return inj.pause(at)
    raise ValueError(kind)


def pipeline_finish(scn: Scenario, toml: Path, run_dir: Path, seed: int, log_dir: Path) -> Fault:
    """torchrun gave up (or was never started): the user runs it again, resuming the committed checkpoint."""
    from benchmarks._chaos_faults import check_exit

    command = train_command(scn, toml, run_dir, seed, restarts=1)
    if (run_dir / "checkpoint.commit.json").exists():
        command = command[:command.index("--out")] + ["--resume", str(run_dir)]
    launch = start(command, log_dir)
    rc = launch.wait()
    return Fault("none", False, rc, launch.seconds, unexpected=check_exit(rc, launch.stderr, (0,)))


# ---- the whole campaign ---------------------------------------------------------------------------
def campaign(scenarios: list[Scenario], faults: int, seeds: list[int], short: bool, rows_path: Path | None,
             keep: bool = False) -> dict:
    """For each seed, run every scenario until its share of ``faults`` has fired; return the figures.

    The single-process runs live on a small ext4 on a loop device the harness fills and frees, the torchrun
    runs on a second one (nobody fills it); the OOM kills use a memory cgroup. All of it is given back
    however the campaign ends (SIGTERM, SIGINT, SIGHUP included)."""
    work = Path(tempfile.mkdtemp(prefix="edgetrgl-chaos-"))
    toml = work / "tiny.toml"
    toml.write_text(TINY_TOML)
    on_exit()  # a stopped campaign still unmounts its disks and removes its cgroup
    disks: list[SmallDisk] = []
    cgroup: MemoryCgroup | None = None
    done = _rows(rows_path)
    rows: list[dict] = []
    started = time.perf_counter()
    lock = threading.Lock()
    total_weight = sum(s.weight for s in scenarios)
    errors: list[str] = []
    setting: dict[str, str] = {}

    def run_scenario(scn: Scenario, seed: int, where: Path, disk: SmallDisk, deck: Deck) -> None:
        try:
            _run_scenario(scn, seed, where, disk, deck)
        except HarnessStopping:
            return  # the main thread is stopping the campaign
        except Exception as exc:  # a thread's failure must reach the report (a stopped harness is no failure)
            errors.append(f"{scn.name}: {type(exc).__name__}: {exc}")
            raise

    def _run_scenario(scn: Scenario, seed: int, where: Path, disk: SmallDisk, deck: Deck) -> None:
        share = max(1, round(faults * scn.weight / total_weight))
        ref = reference(scn, work, toml, seed)
        ref["filesystem"] = disk.kind if disk.mounted else "the work folder's"
        mine = [r for r in done if r["regime"] == scn.name and r["seed"] == seed]
        fired, index = sum(r["faults"] for r in mine), max((r["index"] + 1 for r in mine), default=0)
        rows.extend(mine)
        while fired < share:
            # no disk-full faults under torchrun: its disk is not filled
            fillable = disk.path if disk.mounted and not scn.torchrun else None
            row = chaos_run(scn, index, seed, work, where, fillable, cgroup, toml, ref,
                            kinds=scn.kinds if short else None, deck=deck)
            with lock:
                rows.append(row)
                if rows_path is not None:
                    with rows_path.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
            fired += row["faults"]
            index += 1
            verdict = ("identical" if row["identical"] else "DIFFERENT: " + row["difference"]) if row["finished"] else "LOST"
            print(f"chaos: seed {seed} {scn.name} run {row['index']}: {row['faults']} fault(s) {row['kinds']}, {verdict}"
                  + (f", UNEXPECTED: {row['unexpected']}" if row["unexpected"] else ""), file=sys.stderr, flush=True)
            if short:
                break

    side: list[threading.Thread] = []
    try:
        with exit_deferred():  # a disk or cgroup being made is one the finally block gives back
            disks.append(SmallDisk(work / "disk"))
            if any(s.torchrun for s in scenarios):
                disks.append(SmallDisk(work / "disk-pipeline"))
            if any("oom kill" in s.kinds for s in scenarios):
                made = MemoryCgroup(work.name)
                setting["oom"] = f"a memory cgroup ({'v2' if made.v2 else 'v1'})" if made.available else \
                    f"skipped ({made.why})"
                cgroup = made if made.available else None
        setting["filesystem"] = disks[0].kind
        for seed in seeds:
            unusable = {k for k, off in (("disk full", not disks[0].mounted), ("oom kill", cgroup is None)) if off}
            deck = Deck(random.Random(f"{seed}/deck"),
                        [k for s in scenarios if not s.torchrun for k in s.kinds if k not in unusable])
            places = {s.name: (disks[-1] if s.torchrun else disks[0]) for s in scenarios}
            folder = lambda d: d.path if d.mounted else work / "runs"  # noqa: E731
            # the torchrun scenario runs beside the others (on its own disk: the others fill theirs)
            side = [threading.Thread(target=run_scenario, args=(s, seed, folder(places[s.name]), places[s.name], deck))
                    for s in scenarios if s.torchrun]
            for thread in side:
                thread.start()
            for scn in scenarios:
                if not scn.torchrun:
                    run_scenario(scn, seed, folder(places[scn.name]), places[scn.name], deck)
            for thread in side:
                thread.join()
    finally:
        with exit_deferred():  # a second Ctrl-C does not cut the cleanup short
            stop_all()  # no launch may hold a file on the disks being unmounted
            for thread in side:
                thread.join(timeout=60)
            for disk in disks:
                disk.close()
            if cgroup is not None:
                cgroup.close()
        if not keep and not errors and not any(r["unexpected"] or not r["identical"] for r in rows):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"chaos: evidence kept in {work}", file=sys.stderr)
    if errors:
        raise SystemExit("chaos: " + "; ".join(errors))
    return {**figures(rows, time.perf_counter() - started), **setting}


def _rows(path: Path | None) -> list[dict]:
    if path is None or not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def figures(rows: list[dict], seconds: float) -> dict:
    kinds: Counter = Counter()
    per_regime: dict[str, Counter] = {}
    per_seed: dict[str, Counter] = {}
    for r in rows:
        kinds.update(r["kinds"])
        outcome = Counter(runs=1, faults=r["faults"], restarts=r["restarts"], identical=int(r["identical"]),
                          differing=int(r["finished"] and not r["identical"]), lost=int(not r["finished"]),
                          unexpected=len(r["unexpected"]), not_fired=r["not_fired"])
        per_regime.setdefault(r["regime"], Counter()).update(outcome)
        per_seed.setdefault(str(r["seed"]), Counter()).update(outcome)
    total = Counter()
    for g in per_regime.values():
        total.update(g)
    return {"faults": total["faults"], "kinds": dict(kinds), "runs": total["runs"], "restarts": total["restarts"],
            "identical": total["identical"], "differing": total["differing"], "lost": total["lost"],
            "unexpected": total["unexpected"], "not_fired": total["not_fired"],
            "regimes": {k: dict(v) for k, v in per_regime.items()},
            "seeds": {k: dict(v) for k, v in sorted(per_seed.items(), key=lambda kv: int(kv[0]))},
            "commits": dict(Counter(r.get("commit", "unrecorded") for r in rows)),
            "filesystems": dict(Counter(r.get("filesystem", "unrecorded") for r in rows)),
            "unexpected_outcomes": [f"seed {r['seed']} {r['regime']} run {r['index']}: {u}"
                                    for r in rows for u in r["unexpected"]],
            "differences": [f"seed {r['seed']} {r['regime']} run {r['index']}: {r['difference']}"
                            for r in rows if r["difference"]],
            "seconds": round(seconds, 1), "launch_seconds": round(sum(f.get("seconds", 0.0) for r in rows for f in r["log"]), 1),
            "commit": COMMIT, "runs_detail": rows}


OUTCOMES = ["runs", "faults", "restarts", "identical", "differing", "lost", "unexpected"]


def markdown(result: dict) -> str:
    from benchmarks._common import table

    fs = "; ".join(f"{k} ({n} runs)" for k, n in result["filesystems"].items())
    lines = [f"**{result['faults']} faults injected over {result['runs']} runs, {result['restarts']} restarts: "
             f"{result['identical']} runs bit-identical to the uninterrupted run, {result['differing']} differing, "
             f"{result['lost']} lost, {result['unexpected']} unexpected outcomes.** "
             f"{result['launch_seconds'] / 60:.0f} min of launches.\n",
             f"File system of the runs: {fs}. OOM kills: {result.get('oom', 'see the fault table')}. "
             f"Rows written by commit(s): {', '.join(f'{c} ({n} runs)' for c, n in result['commits'].items())}.\n"]
    if result.get("campaigns"):
        lines.append(f"The runs were written by: {result['campaigns']}.\n")
    lines.append(table(["seed", *OUTCOMES], [[k, *(g.get(c, 0) for c in OUTCOMES)] for k, g in result["seeds"].items()]))
    lines.append(table(["regime", *OUTCOMES], [[k, *(g.get(c, 0) for c in OUTCOMES)] for k, g in result["regimes"].items()]))
    lines.append(table(["fault", "injected"], sorted(([k, n] for k, n in result["kinds"].items()), key=lambda r: -r[1])))
    for title, items in (("Unexpected outcomes", result["unexpected_outcomes"]), ("Differences", result["differences"])):
        if items:
            lines.append(f"{title}:\n\n" + "\n".join(f"- {i}" for i in items) + "\n")
    lines.append("A fault that fired is counted; one that came after its launch had finished is not "
                 f"({result['not_fired']} such). Exit 2 refusals (a full disk while checkpointing, a damaged "
                 "checkpoint) must print exactly one `edgetrgl: error:` line and leave the last checkpoint readable. "
                 "SIGTERM, SIGINT and SIGHUP must end a launch with 128 + the signal's number and a checkpoint; a "
                 "paused run (SIGSTOP, then SIGCONT) must finish by itself; an OOM kill (the memory cgroup's limit "
                 "lowered under its usage) must leave a run that resumes.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=200, help="faults to inject per seed over all regimes (default 200)")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="seed of the fault schedule and of the runs")
    seeds.add_argument("--seeds", help="several seeds, comma-separated (e.g. 0,1,2): one campaign each, in turn")
    parser.add_argument("--regimes", help="comma-separated: " + ",".join(s.name for s in SCENARIOS))
    parser.add_argument("--short", action="store_true", help="one sequential run through one fault of each kind")
    parser.add_argument("--continue", dest="cont", action="store_true",
                        help="keep the runs in chaos-runs.jsonl (a seed's runs already there count towards its faults)")
    parser.add_argument("--json", help="write the figures here only (the short mode's test)")
    parser.add_argument("--report", action="store_true", help="only rebuild chaos.json/.md from chaos-runs.jsonl")
    parser.add_argument("--campaigns", default="", help="with --report: the commands (and commits) that wrote the runs")
    add_output_args(parser)  # chaos.json/.md and chaos-runs.jsonl: only with --record or --results DIR
    args = parser.parse_args(argv)
    folder = output_folder(args)
    if (args.report or args.cont) and folder is None:
        parser.error(f"--{'report' if args.report else 'continue'} works on recorded runs: add --record "
                     f"(benchmarks/results) or --results DIR")
    try:
        seed_list = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        parser.error(f"--seeds takes whole numbers separated by commas, not {args.seeds!r}")
    rows_path = folder / "chaos-runs.jsonl" if folder is not None and not args.short else None
    if args.report:
        result = figures(_rows(rows_path), 0.0)
        result["campaigns"] = args.campaigns
    elif args.short:
        result = campaign([SHORT], 1, seed_list[:1], short=True, rows_path=None)
    else:
        names = args.regimes.split(",") if args.regimes else [s.name for s in SCENARIOS]
        unknown = set(names) - {s.name for s in SCENARIOS}
        if unknown:
            parser.error(f"unknown regime(s): {', '.join(sorted(unknown))}")
        if rows_path is not None:
            if not args.cont:
                rows_path.unlink(missing_ok=True)
            rows_path.parent.mkdir(parents=True, exist_ok=True)
        result = campaign([s for s in SCENARIOS if s.name in names], args.faults, seed_list, short=False,
                          rows_path=rows_path)
        if args.cont:  # the figures of every run in the file, this invocation's and the earlier ones
            result = {**figures(_rows(rows_path), result["seconds"]),
                      **{k: result[k] for k in ("filesystem", "oom") if k in result}}
    print(json.dumps({k: result[k] for k in ("faults", "kinds", "runs", "restarts", "identical", "differing", "lost",
                                             "unexpected", "seeds", "commits", "filesystems")}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    elif not args.short:
        from benchmarks._common import machine

        # the header's commit too is the code this process loaded (machine() reads the checkout as it is now)
        write_results("chaos", {**result, "machine": {**machine(), "edgetrgl_commit": COMMIT}}, markdown(result), folder)
    return 0 if result["differing"] == result["lost"] == result["unexpected"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
