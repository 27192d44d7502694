"""The faults benchmarks/chaos.py injects, one launch of the run each, and what each may end in.

Every fault returns a :class:`Fault`: its kind, whether it fired (a kill that came after the launch
had already finished did not), the launch's exit status, and ``unexpected``: what went wrong if
the outcome is not one the guarantee allows (a traceback, two error lines, a hang, a torn checkpoint).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 300  # one launch of a tiny run; past this it is a hang, counted as unexpected


@dataclass
class Fault:
    """One injected fault and how the run took it."""

    kind: str
    fired: bool
    rc: int | None = None
    seconds: float = 0.0
    detail: str = ""
    unexpected: str = ""  # empty: the outcome is one the guarantee allows
    restarts: int = 0  # torchrun's own restarts of the ranks during this launch

    def row(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0) or k in ("fired", "rc")}


@dataclass
class Launch:
    """A running ``edgetrgl train`` (or torchrun) process, its output going to files."""

    proc: subprocess.Popen
    stderr_path: Path
    started: float = field(default_factory=time.perf_counter)

    def wait(self, timeout: float = LAUNCH_TIMEOUT_S) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=60)
            return None

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.started, 2)


def env_for(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The launches' environment: this checkout first on the path, one thread (same maths every time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGETRGL_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(extra or {}))
    return env


def start(command: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Launch:
    log_dir.mkdir(parents=True, exist_ok=True)
    err = log_dir / f"stderr-{time.monotonic_ns()}.txt"
    with err.open("w") as fh:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=fh, env=env_for(env), cwd=ROOT,
                                start_new_session=True)  # its own group: a kill reaches torchrun's ranks too
    return Launch(proc, err)


def kill_group(proc: subprocess.Popen, signum: int) -> bool:
    """Send ``signum`` to the launch's process group; False if it had already ended."""
    if proc.poll() is not None:
        return False
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        return False
    return True


# ---- what a launch may end in ------------------------------------------------------------------
def check_exit(rc: int | None, stderr: str, allowed: tuple[int, ...]) -> str:
    """Why the exit is not one the guarantee allows ("" if it is)."""
    if rc is None:
        return f"hung: no exit within {LAUNCH_TIMEOUT_S} s"
    if "Traceback" in stderr:
        return f"traceback (exit {rc}): {tail(stderr)}"
    if rc not in allowed:
        return f"exit {rc} (allowed {allowed}): {tail(stderr)}"
    if rc == 2:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        if len(lines) != 1 or not lines[0].startswith("edgetrgl: error: "):
            return f"exit 2 without exactly one 'edgetrgl: error:' line: {tail(stderr)}"
    return ""


def tail(text: str, n: int = 400) -> str:
    return " | ".join(text.strip().splitlines())[-n:]


def checkpoint_intact(run_dir: Path) -> str:
    """"" if the run folder's checkpoint (if any) is complete and readable, else why not."""
    from edgetrgl.errors import UserError
    from edgetrgl.training.checkpoint import load_checkpoint

    if not (run_dir / "checkpoint.pt").exists():
        return ""
    try:
        load_checkpoint(run_dir)
    except UserError as exc:
        return f"the last checkpoint is not intact: {exc}"
    return ""


def warnings_logged(run_dir: Path) -> list[str]:
    return [r.get("message", "") for r in _records(run_dir) if r.get("event") == "warning"]


# ---- the single-process faults (the run under --auto-resume, as the systemd unit runs it) -------
class Injector:
    """Injects faults into one run folder; ``command`` is the unit's one command line.

    Args:
        command: ``edgetrgl train ... --out RUN --auto-resume``.
        run_dir: the run folder (on ``disk`` for the disk-full faults).
        log_dir: where each launch's stderr goes.
        rng: the fault schedule's random source.
        launch_s: how long one uninterrupted launch takes (the window for timed faults).
        points: how often each fault point is reached in a whole run (``step``, ``cache_write``, ...).
        disk: a small file system the harness can fill (None: no disk-full faults).
    """

    def __init__(self, command: list[str], run_dir: Path, log_dir: Path, rng: random.Random, launch_s: float,
                 points: dict[str, int], disk: Path | None) -> None:
        self.command, self.run_dir, self.log_dir, self.rng = command, run_dir, log_dir, rng
        self.launch_s, self.points, self.disk = launch_s, points, disk

    def launch(self, env: dict[str, str] | None = None) -> Launch:
        return start(self.command, self.log_dir, env)

    def clean(self) -> Fault:
        """A launch with no fault: the unit starting the run again."""
        launch = self.launch()
        rc = launch.wait()
        return Fault("none", False, rc, launch.seconds, unexpected=check_exit(rc, launch.stderr, (0,)))

    def kill_at_point(self, at: str | None = None) -> Fault:
        """SIGKILL the Nth time a named point is reached (``_faults``: step, cache write, checkpoint write/rename);
        ``at`` (``"point:N"``) fixes both, else they are drawn."""
        if at:
            point, nth = at.split(":")[0], int(at.split(":")[1])
        else:
            point = self.rng.choice([p for p, n in self.points.items() if n and p != "evaluate"])
            nth = self.rng.randint(1, self.points[point])
        launch = self.launch({"EDGETRGL_CRASH_AT": f"{point}:{nth}"})
        rc = launch.wait()
        fired = rc == -signal.SIGKILL
        bad = check_exit(rc, launch.stderr, (0, -signal.SIGKILL)) or checkpoint_intact(self.run_dir)
        return Fault(f"sigkill at {point}", fired, rc, launch.seconds, f"{point}:{nth}", bad)

    def kill_timed(self, signum: int = signal.SIGKILL) -> Fault:
        """SIGKILL (the OOM killer, a power cut) or SIGTERM (``systemctl stop``) at a random instant."""
        launch = self.launch()
        delay = self.rng.uniform(0.2, self.launch_s)  # launch_s: what is left of an uninterrupted launch
        try:
            rc = launch.proc.wait(timeout=delay)
            fired = False
        except subprocess.TimeoutExpired:
            fired = kill_group(launch.proc, signum)
            rc = launch.wait()
        name = signal.Signals(signum).name
        # SIGTERM before the handlers are installed kills like SIGKILL would; after, 143 with a checkpoint
        allowed = (0, -signal.SIGKILL) if signum == signal.SIGKILL else (0, 128 + signum, -signum)
        bad = check_exit(rc, launch.stderr, allowed) or checkpoint_intact(self.run_dir)
        if rc == 128 + signum and "Traceback" not in launch.stderr and f"{name} received" not in launch.stderr:
            bad = bad or f"exit {rc} without saying {name} was received: {tail(launch.stderr)}"
        return Fault(f"{name.lower()} timed", fired and rc != 0, rc, launch.seconds, f"after {delay:.2f} s", bad)

    def sigterm_in_evaluation(self, at: str | None = None) -> Fault:
        """SIGTERM while the test set is being scored: finish the step, checkpoint, exit 143; ``at``
        (``"evaluate:N"``) fixes the instant, else it is drawn."""
        nth = int(at.split(":")[1]) if at else self.rng.randint(1, max(self.points.get("evaluate", 1), 1))
        launch = self.launch({"EDGETRGL_TERM_AT": f"evaluate:{nth}"})
        rc = launch.wait()
        bad = check_exit(rc, launch.stderr, (0, 128 + signal.SIGTERM)) or checkpoint_intact(self.run_dir)
        # after the last evaluation there is no step left to stop at: the run finishes (exit 0)
        return Fault("sigterm in evaluation", rc == 128 + signal.SIGTERM, rc, launch.seconds, f"evaluate:{nth}", bad)

    def second_writer(self, at: str | None = None) -> list[Fault]:
        """The same command started again while the run trains: one of the two is refused; then a SIGKILL.

        ``at`` (``"step:N"``): the first launch stalls there (holding the run folder) and the second
        starts once it has; else the second starts at a random instant, perhaps after the first ended."""
        if at:
            first = self.launch({"EDGETRGL_STALL_AT": at})
            waited = time.monotonic()
            while "stalled at" not in first.stderr and first.proc.poll() is None \
                    and time.monotonic() - waited < LAUNCH_TIMEOUT_S:
                time.sleep(0.1)
        else:
            first = self.launch()
            time.sleep(self.rng.uniform(0.5, self.launch_s))
        second = self.launch()
        rc2 = second.wait()
        refused = rc2 == 2 and "is in use by" in second.stderr
        kill_group(first.proc, signal.SIGKILL)  # a reboot: the run goes on with the next fault
        rc1 = first.wait()
        bad = check_exit(rc2, second.stderr, (0, 2, -signal.SIGKILL)) or check_exit(rc1, first.stderr, (0, 2, -signal.SIGKILL))
        if rc2 == 2 and not refused:
            bad = bad or f"the second writer failed for another reason: {tail(second.stderr)}"
        first_refused = rc1 == 2 and "is in use by" in first.stderr
        if not bad and rc2 == 0 and rc1 == 0:
            detail = "both finished (the first before the second started)"
        else:
            detail = "second refused" if refused else ("first refused" if first_refused else f"exits {rc1}/{rc2}")
        if refused and first_refused:
            bad = "both writers were refused"
        bad = bad or checkpoint_intact(self.run_dir)
        reboot = Fault("sigkill timed", rc1 == -signal.SIGKILL, rc1, first.seconds, "the first writer, after the second")
        return [Fault("second writer", refused or first_refused, rc2, second.seconds, detail, bad), reboot]

    def disk_full(self) -> Fault:
        """The disk fills up at a random instant, leaving 0 to 600 KB free; freed once the launch ends."""
        assert self.disk is not None
        launch = self.launch()
        delay = self.rng.uniform(0.3, self.launch_s)
        slack = self.rng.randint(0, 600_000)
        filler = self.disk / "filler"
        fired = False
        try:
            try:
                launch.proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                fill(filler, slack)
                fired = launch.proc.poll() is None
            rc = launch.wait()
        finally:
            filler.unlink(missing_ok=True)
        stderr = launch.stderr
        bad = check_exit(rc, stderr, (0, 2)) or checkpoint_intact(self.run_dir)
        if rc == 2 and "disk full" not in stderr and "no space" not in stderr.lower():
            bad = bad or f"exit 2 for another reason than the full disk: {tail(stderr)}"
        fell_back = [w for w in warnings_logged(self.run_dir) if "disk full" in w]
        detail = f"{slack:,} bytes left after {delay:.2f} s: " + (
            "refused with one line, checkpoint intact" if rc == 2 else
            "cache moved to host memory" if fell_back else "nothing needed the space")
        return Fault("disk full", fired and (rc == 2 or bool(fell_back)), rc, launch.seconds, detail, bad)

    def corrupt_file(self, what: str, at: str | None = None) -> list[Fault]:
        """What a power cut or a failing card leaves: a SIGKILL (at ``at``, else at a drawn point), then a cache
        shard or the checkpoint cut short or with one bit flipped. A bad shard is rebuilt; a bad checkpoint is
        refused with one line."""
        kill = self.kill_at_point(at)
        if kill.unexpected or not kill.fired:
            return [kill]
        if what == "shard":
            shards = [p for manifest in self.run_dir.glob("cache/*/manifest.json")
                      for p in sorted(manifest.parent.glob("view*_shard*.bin"))]
            target = self.rng.choice(shards) if shards else None
        else:
            target = self.run_dir / "checkpoint.pt" if (self.run_dir / "checkpoint.pt").exists() else None
        if target is None or (self.run_dir / "summary.json").exists():
            return [kill, Fault(f"corrupt {what}", False, kill.rc, 0.0, f"no {what} to damage after {kill.detail}")]
        how = damage(target, self.rng)
        if what == "shard":  # the next launch finds it (manifest checksum) and rebuilds the cache
            return [kill, Fault(f"corrupt {what}", True, kill.rc, 0.0, f"{how} after {kill.detail}")]
        launch = self.launch()
        rc = launch.wait()
        bad = check_exit(rc, launch.stderr, (2,))
        if not bad and "corrupt" not in launch.stderr:
            bad = f"a damaged checkpoint was refused for another reason: {tail(launch.stderr)}"
        # the user's way out, which the error names: move the bad checkpoint away; the run starts again
        os.replace(target, target.with_name("checkpoint.pt.corrupt"))
        return [kill, Fault("corrupt checkpoint", True, rc, launch.seconds, f"{how}: refused, run restarted", bad)]


def fill(filler: Path, leave: int) -> None:
    """Fill the file system holding ``filler`` until ``leave`` bytes are free."""
    stat = os.statvfs(filler.parent)
    size = stat.f_bavail * stat.f_frsize - leave
    if size <= 0:
        return
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        pass  # the run took some space meanwhile: the disk is as full as it gets
    finally:
        os.close(fd)


def damage(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if rng.random() < 0.5 and len(data) > 1:
        cut = rng.randrange(len(data))
        path.write_bytes(bytes(data[:cut]))
        return f"{path.name} truncated to {cut:,} of {len(data):,} bytes"
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"{path.name}: one bit flipped at byte {at:,}"


# ---- the pipeline under torchrun: a rank killed, torchrun restarting the group -------------------
def pipeline_launch(command: list[str], run_dir: Path, log_dir: Path, rng: random.Random, launch_s: float,
                    points: dict[str, int], kills: int) -> list[Fault]:
    """One torchrun launch (``--max-restarts`` above ``kills``): first a rank SIGKILLed at a fault point
    (``EDGETRGL_CRASH_RANK``: only torchrun's first attempt), then ``kills - 1`` ranks SIGKILLed at
    random instants of the restarted attempts."""
    point = rng.choice(["step", "checkpoint_write", "checkpoint_rename"])
    nth, rank = rng.randint(1, points[point]), rng.randrange(2)
    launch = start(command, log_dir, {"EDGETRGL_CRASH_AT": f"{point}:{nth}", "EDGETRGL_CRASH_RANK": str(rank)})
    faults, timed = [], []
    for _ in range(kills - 1):
        time.sleep(rng.uniform(4.0, max(launch_s, 5.0)))
        workers = [p for p in _children(launch.proc.pid) if "torch.distributed.run" not in " ".join(_cmdline(p))]
        if launch.proc.poll() is not None or not workers:
            break
        victim = rng.choice(workers)
        try:
            victim.kill()
            timed.append(Fault("rank sigkill timed", True, None, 0.0, f"pid {victim.pid} at {launch.seconds:.1f} s"))
        except psutil.Error:
            pass
    rc = launch.wait()
    stderr = launch.stderr
    # torchrun reports each rank that died; it then restarts the group (a kill before the first
    # committed checkpoint starts the run afresh, so metrics.jsonl cannot count the restarts)
    restarts = stderr.count("failed (exitcode: ")
    # the surviving rank's gloo error ("Connection closed by peer") is torchrun's normal report of a
    # lost rank: only the exit status and the finished run's identity judge a pipeline launch
    bad = "" if rc == 0 else (f"hung: no exit within {LAUNCH_TIMEOUT_S} s" if rc is None else f"exit {rc}: {tail(stderr)}")
    faults.append(Fault("rank sigkill at " + point, restarts > len(timed), rc, launch.seconds,
                        f"{point}:{nth} on rank {rank}", bad, restarts=restarts))
    return faults + timed


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line cut by a kill: the next resume truncates it away
    return out
