"""Crash states: what a power cut can leave of a run folder, and whether ``--resume`` copes with each.

SIGKILL is not a power cut: after one the kernel still holds every write. This explorer records a
short real run (``python -m edgetrgl train``, the bundled offline data, a disk cache) under
``strace -f``, turns the trace into file operations (benchmarks/_crash_trace.py), and builds the
states a crash may leave between fsync barriers (after Pillai et al., OSDI 2014, "ALICE"): every
prefix of the operations, the last write torn, a file's unsynced writes lost (a rename persisted
without its data), a create/rename/unlink/mkdir lost because its folder was never fsync'd, and
everything unsynced lost. Duplicates are merged; ``--states`` of them are drawn (every family in
turn), each is written to ext4 on a loop device, and the run is resumed from it with the CLI:

* ``resumed, identical``: the resumed run ends with model.pt equal tensor for tensor to the
  uninterrupted run's, and the same epoch and module records in metrics.jsonl;
* ``refused, nothing lost``: one error line, exit 2, and every file of the state unchanged;
* anything else is a failure: a file the run had made durable (fsync'd, and its folder) missing
  from the state, a resume that differs, a refusal that changed a file, a traceback.

    python benchmarks/crash_states.py --quick             # a few states (tests/test_crash_states.py)
    python benchmarks/crash_states.py --states 200 --minutes 40 --record

Needs root (loop device, mount) and strace. ``--record`` writes benchmarks/results/crash_states.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import add_output_args, output_folder  # noqa: E402
from benchmarks._crash_trace import TRACED, State, crash_states, materialise, parse_trace  # noqa: E402

TINY_TOML = "model_options = { width = 2 }\ndataset_options = { image_size = 8 }\n"
RUN_ARGS = ["--regime", "sequential", "--epochs", "1", "--modules", "2", "--cache", "disk",
            "--train-fraction", "0.05", "--batch-size", "64", "--seed", "0", "--quiet"]
RECORD_KEYS = ("event", "lap", "module", "epoch", "loss", "ce", "transport", "train_accuracy", "test_accuracy",
               "tau", "lr", "blocks")
GOOD = ("resumed, identical", "refused, nothing lost")
RESUME_TIMEOUT_S = 300

# Loaded by the recording run only: strace cannot see writes through a memory map, so before a disk
# cache is sealed this copies each shard's bytes aside and marks the instant in the trace.
SITECUSTOMIZE = '''
import os, shutil
from pathlib import Path
from edgetrgl.cache import activation_cache as _ac
_finish = _ac.ActivationCache.finish
def finish(self):
    if self.backend == "disk" and self.complete:
        root, side = Path(os.environ["CRASH_ROOT"]), Path(os.environ["CRASH_MMAP_DIR"])
        for v in range(self.num_views):
            for s in range(self.num_shards):
                path = self._shard_path(v, s)
                copy = side / path.relative_to(root)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
                try:
                    os.write(-1, b"edgetrgl-mmap:" + str(path).encode())
                except OSError:
                    pass
    return _finish(self)
_ac.ActivationCache.finish = finish
'''


# ---- the ext4 disk -------------------------------------------------------------------------------
@contextmanager
def ext4_disk(work: Path, size_mb: int = 256):
    """An ext4 file system on a loop device, mounted at ``work/mnt``; unmounted and freed on exit."""
    image, mnt = work / "ext4.img", work / "mnt"
    mnt.mkdir()
    with open(image, "wb") as fh:
        fh.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mount", "-t", "ext4", loop, str(mnt)], check=True, capture_output=True)
        try:
            yield mnt
        finally:
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)


def available() -> str:
    """Why this machine cannot run the explorer ("" if it can)."""
    if os.geteuid() != 0:
        return "needs root (loop device, mount)"
    for tool in ("strace", "mkfs.ext4", "losetup", "mount"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    probe = subprocess.run(["losetup", "-f"], capture_output=True, text=True)
    if probe.returncode or not probe.stdout.strip():
        return "no free loop device"
    return ""


# ---- the run -------------------------------------------------------------------------------------
def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return {**env, **(extra or {})}


def record(work: Path, run: Path) -> tuple[list, dict[str, bytes]]:
    """Train once under strace into ``run``; returns the operations and the finished run's files."""
    toml, side, hooks = work / "tiny.toml", work / "mmap", work / "hooks"
    toml.write_text(TINY_TOML)
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    trace = work / "trace.txt"
    command = ["strace", "-f", "-qq", "-y", "-xx", "-s", str(1 << 24), "-o", str(trace), "-e", f"trace={TRACED}",
               sys.executable, "-m", "edgetrgl", "train", "--config", str(toml), *RUN_ARGS, "--out", str(run)]
    env = env_for({"PYTHONPATH": f"{hooks}:{ROOT}", "CRASH_ROOT": str(run), "CRASH_MMAP_DIR": str(side)})
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise SystemExit(f"the recorded run failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    with trace.open(encoding="ascii") as fh:
        ops = parse_trace(fh, run, side)
    final = {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    return ops, final


def records(raw: bytes) -> list[dict]:
    """The epoch and module records of a metrics.jsonl, without the timings."""
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            out.append({"unreadable": line[:80]})
            continue
        if rec.get("event") in ("epoch", "module"):
            out.append({k: rec[k] for k in RECORD_KEYS if k in rec})
    return out


def same_weights(a: Path, b: bytes) -> bool:
    import io

    import torch

    try:
        x = torch.load(a, map_location="cpu", weights_only=True)["state_dict"]
    except Exception:
        return False
    y = torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)["state_dict"]
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def kept(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files a refusal must leave alone (the lock's contents and temporary files do not count)."""
    return {p: b for p, b in files.items() if p != ".lock" and not p.endswith(".tmp")}


def try_state(state: State, ops: list, run: Path, final: dict[str, bytes]) -> tuple[str, str]:
    """Write ``state`` into ``run``, resume it, and say how it ended: ``(outcome, detail)``."""
    if state.lost:
        return "crash lost a durable file", ", ".join(state.lost)
    shutil.rmtree(run, ignore_errors=True)
    materialise(state, run)
    command = [sys.executable, "-m", "edgetrgl", "train", "--resume", str(run), "--quiet"]
    try:
        done = subprocess.run(command, env=env_for(), cwd=ROOT, capture_output=True, text=True,
                              timeout=RESUME_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "hung", f"no exit within {RESUME_TIMEOUT_S} s"
    err = done.stderr.strip()
    if "Traceback" in err or done.returncode not in (0, 2):
        return "failed", f"exit {done.returncode}: {err[-300:]}"
    if done.returncode == 0 or "summary.json" in state.files:  # resumed, or a finished run: it must be whole
        if not (run / "model.pt").is_file() or not same_weights(run / "model.pt", final["model.pt"]):
            return "resumed, weights differ", ""
        got, want = records((run / "metrics.jsonl").read_bytes()), records(final["metrics.jsonl"])
        if got != want:
            return "resumed, metrics differ", f"{len(got)} records, {len(want)} expected"
        if done.returncode == 0:
            return "resumed, identical", ""
    lines = [line for line in err.splitlines() if line.strip()]
    changed = [p for p, b in kept(state.files).items() if not (run / p).is_file() or (run / p).read_bytes() != b]
    if len(lines) != 1:
        return "failed", f"{len(lines)} error lines: {err[-300:]}"
    if changed:
        return "refused, lost files", ", ".join(changed)
    return "refused, nothing lost", _gist(lines[0])


def _gist(line: str) -> str:
    """The refusal without its paths, so that equal refusals count together."""
    return " ".join(w for w in line.split() if "/" not in w)[:120]


def focus_name(path: str) -> str:
    """A file's name with the cache's per-module folders folded together."""
    parts = path.split("/")
    if parts[0] == "cache" and len(parts) > 2:
        return "cache/*/" + "/".join(parts[2:])
    return path or "(run folder)"


def pick(states: list[State], count: int, seed: int, quick: bool = False) -> list[State]:
    """``count`` states, every family in turn, at random within a family.

    ``quick``: three that have found bugs: metrics.jsonl's unsynced records lost mid-run, everything
    unsynced lost at the end, a checkpoint write torn.
    """
    rng = random.Random(seed)
    if quick:
        metrics = sorted((s for s in states if s.family == "data not synced" and s.focus == "metrics.jsonl"),
                         key=lambda s: s.crash_at)
        harsh = [s for s in states if s.family == "all unsynced lost"]
        torn = [s for s in states if s.family == "torn write" and s.focus.startswith("checkpoint.pt")]
        groups = [metrics[len(metrics) // 2:len(metrics) // 2 + 1], harsh[-1:], [rng.choice(torn)] if torn else []]
        return [g[0] for g in groups if g]
    families: dict[str, list[State]] = defaultdict(list)
    for state in states:
        families[state.family].append(state)
    for group in families.values():
        rng.shuffle(group)
    chosen: list[State] = []
    while len(chosen) < count and any(families.values()):
        for name in sorted(families):
            if families[name] and len(chosen) < count:
                chosen.append(families[name].pop())
    return chosen


def explore(count: int, minutes: float, seed: int, quick: bool = False) -> dict:
    reason = available()
    if reason:
        raise SystemExit(f"crash_states: {reason}")
    work = Path(tempfile.mkdtemp(prefix="edgetrgl-crash-"))
    started = time.perf_counter()
    try:
        with ext4_disk(work) as mnt:
            run = mnt / "run"
            ops, final = record(work, run)
            states = crash_states(ops)
            chosen = pick(states, count, seed, quick)
            rows = []
            for n, state in enumerate(chosen):
                if minutes and time.perf_counter() - started > minutes * 60:
                    break
                outcome, detail = try_state(state, ops, run, final)
                rows.append({"crash_at": state.crash_at, "of": len(ops), "family": state.family,
                             "file": focus_name(state.focus), "outcome": outcome, "detail": detail})
                print(f"[{n + 1}/{len(chosen)}] after op {state.crash_at}/{len(ops)} "
                      f"({ops[state.crash_at - 1].describe() if state.crash_at else 'none'}), {state.family}: "
                      f"{outcome}{' - ' + detail if detail else ''}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"operations": len(ops), "distinct_states": len(states), "tried": len(rows),
            "states_losing_durable_files": sum(bool(s.lost) for s in states),
            "failures": sum(r["outcome"] not in GOOD for r in rows), "seed": seed,
            "wall_s": round(time.perf_counter() - started, 1), "rows": rows}


def table(report: dict) -> str:
    by_file: dict[str, Counter] = defaultdict(Counter)
    for row in report["rows"]:
        by_file[row["file"]][row["outcome"]] += 1
    outcomes = sorted({r["outcome"] for r in report["rows"]}, key=lambda o: (o not in GOOD, o))
    head = "| file | " + " | ".join(outcomes) + " |"
    lines = [head, "|" + "---|" * (len(outcomes) + 1)]
    for name in sorted(by_file):
        lines.append(f"| {name} | " + " | ".join(str(by_file[name][o]) for o in outcomes) + " |")
    lines.append("| **all** | " + " | ".join(str(sum(c[o] for c in by_file.values())) for o in outcomes) + " |")
    families = Counter(r["family"] for r in report["rows"])
    refusals = Counter(r["detail"] for r in report["rows"] if r["outcome"] == "refused, nothing lost")
    return "\n".join([
        f"{report['tried']} crash states tried of {report['distinct_states']} distinct ones "
        f"({report['operations']} file operations traced), {report['failures']} failures, "
        f"{report['wall_s']} s.", "",
        f"Of all {report['distinct_states']} distinct states, {report.get('states_losing_durable_files', 0)} lack a "
        f"file the run had made durable (fsync'd, and its folder) before the crash (checked without resuming).",
        "", *lines, "",
        "States by family: " + ", ".join(f"{k} {v}" for k, v in sorted(families.items())) + ".",
        "Refusals: " + "; ".join(f"{v}x \"{k}\"" for k, v in refusals.most_common()) + "." if refusals else "",
        *(f"- FAILURE after op {r['crash_at']} ({r['family']}, {r['file']}): {r['outcome']} {r['detail']}"
          for r in report["rows"] if r["outcome"] not in GOOD)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=60, help="crash states to try (default 60)")
    parser.add_argument("--minutes", type=float, default=0, help="stop trying new states after this long")
    parser.add_argument("--quick", action="store_true", help="three states known to catch bugs, for the test suite")
    parser.add_argument("--seed", type=int, default=0, help="which states are drawn")
    add_output_args(parser)
    args = parser.parse_args(argv)
    out = output_folder(args)
    report = explore(args.states, args.minutes, args.seed, args.quick)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    report["commit"] = commit
    text = table(report)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "crash_states.json").write_text(json.dumps(report, indent=1) + "\n")
        command = "python benchmarks/crash_states.py " + " ".join(argv if argv is not None else sys.argv[1:])
        (out / "crash_states.md").write_text(f"# Crash states\n\n`{command}` at commit {commit}, "
                                             f"{os.cpu_count()} CPU cores, torch threads 1, ext4 on a loop "
                                             f"device.\n\n{text}\n")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
