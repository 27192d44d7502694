"""Where a run's anonymous memory peaks: `edgetrgl train` in-process, RssAnon sampled per phase.

The cgroup proof (cgroup_proof.py) gives one number, the whole run's anonymous peak. To make the
plan's estimate count what it misses, this finds *which phase* holds it: it runs the CLI in this
interpreter, wraps a few phase functions (planning, each module's epochs, evaluation, the cache
write pass, checkpoints) so that a label names the current phase, and samples this process's
``RssAnon`` (/proc/self/status: what a memory cgroup's ``total_rss`` counts for it) every 10 ms
in a thread. It prints one JSON object: the plan's estimate and, per phase, the anonymous memory
on entry and exit, the largest sample and the seconds spent (with ``--disk PATH``, also the MiB read
and written on the disk holding PATH). A diagnostic, not a proof: run it inside cgroup_proof.py for that.

    PYTHONPATH=. python benchmarks/devices/phase_memory.py --json out.jsonl -- \\
        --device-profile rpi4-2gb --budget 650MiB --epochs 1 --out /tmp/run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import threading
import time
from pathlib import Path

MIB = 2**20


def _disk_stat_path(path: str) -> Path:
    """/sys/block/.../stat of the block device holding ``path`` (sectors read: field 3, written: field 7)."""
    dev = os.stat(path).st_dev
    return Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")


def _disk_mib(stat: Path | None) -> tuple[float, float]:
    if stat is None:
        return 0.0, 0.0
    fields = stat.read_text().split()
    return int(fields[2]) * 512 / MIB, int(fields[6]) * 512 / MIB


def _anon() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PhaseSampler:
    """A thread sampling RssAnon, charging each sample to the phase named last."""

    def __init__(self, period_s: float = 0.01, disk: str | None = None) -> None:
        self.period_s, self.phase, self.phases, self.order = period_s, "startup", {}, []
        self.disk_stat = _disk_stat_path(disk) if disk else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._enter("startup")

    def _enter(self, name: str) -> None:
        now = _anon()
        if name not in self.phases:
            self.phases[name] = {"enter_mib": round(now / MIB, 1), "max_mib": now / MIB, "count": 0}
            self.order.append(name)
        self.phases[name]["count"] += 1
        self.phase = name

    def _charge(self, value: int) -> None:
        record = self.phases[self.phase]
        record["max_mib"] = max(record["max_mib"], value / MIB)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._charge(_anon())
            time.sleep(self.period_s)

    @contextlib.contextmanager
    def during(self, name: str):
        outer = self.phase
        self._enter(name)
        started, (read0, written0) = time.perf_counter(), _disk_mib(self.disk_stat)
        try:
            yield
        finally:
            self._charge(_anon())
            record = self.phases[name]
            record["exit_mib"] = round(_anon() / MIB, 1)
            record["seconds"] = round(record.get("seconds", 0.0) + time.perf_counter() - started, 2)
            if self.disk_stat is not None:
                read1, written1 = _disk_mib(self.disk_stat)
                record["disk_read_mib"] = round(record.get("disk_read_mib", 0.0) + read1 - read0, 1)
                record["disk_written_mib"] = round(record.get("disk_written_mib", 0.0) + written1 - written0, 1)
            self.phase = outer

    def wrap(self, owner, attr: str, name) -> None:
        """Replace ``owner.attr`` by a version that runs under phase ``name(*args, **kwargs)`` (or a plain string)."""
        original = getattr(owner, attr)

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            with self.during(name(*args, **kwargs) if callable(name) else name):
                return original(*args, **kwargs)

        setattr(owner, attr, wrapped)

    def report(self) -> list[dict]:
        return [{"phase": n, **{k: round(v, 2) if isinstance(v, float) else v for k, v in self.phases[n].items()}}
                for n in self.order]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    parser.add_argument("--disk", help="also count bytes read and written per phase on the disk holding this path")
    parser.add_argument("--fsync-cache", action="store_true",
                        help="fsync each disk-cache shard when it is sealed (see sync_cache.py)")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then `edgetrgl train` arguments (with --out)")
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    sampler = PhaseSampler(disk=args.disk)
    if args.fsync_cache:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from sync_cache import patch_finish

        patch_finish()
    sampler._thread.start()

    import edgetrgl.planning.run_plan as run_plan
    import edgetrgl.training.run as run_body
    import edgetrgl.training.checkpoint as checkpoint  # noqa: F401  (the trainer's checkpoint goes through Trainer)
    import edgetrgl.training.inputs as inputs
    import edgetrgl.training.regimes.sequential as sequential
    import edgetrgl.training.trainer as trainer
    from edgetrgl.cli.main import main as cli_main

    sampler.wrap(run_body, "load_data", "load data")
    sampler.wrap(run_body, "make_plan", "make_plan")
    sampler.wrap(sequential, "run_epoch", lambda trainer_, **kw: f"module {kw['modules'][0] + 1} train")
    sampler.wrap(trainer.Trainer, "accuracy", lambda self, k, batches, **_: f"module {k + 1} evaluate")
    sampler.wrap(inputs.ModuleInputs, "module_done", lambda self, k, **_: f"module {k + 1} cache write")
    sampler.wrap(trainer.Trainer, "checkpoint", "checkpoint")
    sampler.wrap(trainer.Trainer, "measured_step", lambda self, k, *a, **_: f"module {(k or 0) + 1} measured step")
    del run_plan
    code = cli_main(["train", "--quiet", "--overwrite", *train_args])
    sampler._stop.set()
    out = Path(train_args[train_args.index("--out") + 1]) if "--out" in train_args else None
    estimate = None
    if out is not None and (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        process = summary["plan"].get("process") or {}
        estimate = {k: round(v / MIB, 1) for k, v in process.items() if k.endswith("_bytes") and isinstance(v, int)}
        estimate["module_peaks_mib"] = [round(m["estimated_peak_bytes"] / MIB, 1) for m in summary["modules"]]
        estimate["cache"] = summary["plan"]["cache"].get("mode")
    result = {"args": train_args, "exit_code": code, "estimate_mib": estimate, "phases": sampler.report(),
              "max_anon_mib": round(max(p["max_mib"] for p in sampler.phases.values()), 1)}
    line = json.dumps(result)
    print(line)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
