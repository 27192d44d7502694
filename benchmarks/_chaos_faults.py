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
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from benchmarks._chaos_system import MemoryCgroup, exit_deferred

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT_S = 300  # one launch of a tiny run; past this it is a hang, counted as unexpected
PAUSE_S = (0.2, 3.0)  # how long a SIGSTOPped run stays stopped before its SIGCONT
_live: set = set()  # the launches still running: ended when the harness is stopped
_stopping = threading.Event()
_live_lock = threading.Lock()


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

    def __hash__(self) -> int:
        return id(self)

    def wait(self, timeout: float = LAUNCH_TIMEOUT_S) -> int | None:
        """Its exit status; None (killed) past ``timeout``: a hang. A wait cut short (the harness is stopped)
        leaves it among the live launches, for :func:`stop_all`."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=60)
            rc = None
        _live.discard(self)
        return rc

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


class HarnessStopping(RuntimeError):
    """The harness is being stopped: a thread that wanted a new launch ends instead."""


def start(command: list[str], log_dir: Path, env: dict[str, str] | None = None) -> Launch:
    log_dir.mkdir(parents=True, exist_ok=True)
    err = log_dir / f"stderr-{time.monotonic_ns()}.txt"
    with exit_deferred(), _live_lock, err.open("w") as fh:  # started and known, or not started
        if _stopping.is_set():
            raise HarnessStopping("the harness is stopping: no new launch")
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=fh, env=env_for(env), cwd=ROOT,
                                start_new_session=True)  # its own group: a kill reaches torchrun's ranks too
        launch = Launch(proc, err)
        _live.add(launch)
    return launch


def stop_all() -> None:
    """The harness is ending: SIGKILL every launch still running and start no more (the disk can then go)."""
    with _live_lock:
        _stopping.set()
    procs = [p for launch in list(_live) for p in [_process(launch.proc.pid), *_children(launch.proc.pid)] if p]
    for launch in list(_live):
        kill_group(launch.proc, signal.SIGKILL)  # a SIGSTOPped one too: SIGKILL reaches a stopped process
    for proc in procs:  # torchrun's ranks and any other child too: none may keep a file open on the disk
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=30)
    for launch in list(_live):
        try:
            launch.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        _live.discard(launch)


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

    def kill_timed(self, signum: int = signal.SIGKILL, at: str | None = None) -> Fault:
        """SIGKILL (a power cut), SIGTERM (``systemctl stop``), SIGINT (Ctrl-C) or SIGHUP (a closed terminal)
        at a random instant; ``at="handlers"``: once the CLI has installed its handlers (the short mode's
        way to make it fire). A stop signal is graceful: checkpoint, exit 128 + its number."""
        launch = self.launch()
        delay = self.wait_instant(launch, at)
        fired = kill_group(launch.proc, signum)
        rc = launch.wait()
        name = signal.Signals(signum).name
        # a stop signal in the instant before the CLI installs its handlers, or after Python drops them at
        # exit, kills like SIGKILL would (nothing written yet / the run over); else 128 + its number
        allowed = (0, -signal.SIGKILL) if signum == signal.SIGKILL else (0, 128 + signum, -signum)
        bad = check_exit(rc, launch.stderr, allowed) or checkpoint_intact(self.run_dir)
        if rc == 128 + signum and "Traceback" not in launch.stderr and f"{name} received" not in launch.stderr:
            bad = bad or f"exit {rc} without saying {name} was received: {tail(launch.stderr)}"
        return Fault(f"{name.lower()} timed", fired and rc != 0, rc, launch.seconds, f"after {delay:.2f} s", bad)

    def wait_instant(self, launch: Launch, at: str | None) -> float:
        """Wait for the fault's instant (drawn in the window, or ``at="handlers"``); the seconds since the launch."""
        if at == "handlers":  # the CLI's stop handlers are in place: the launch is past Python's imports
            _wait_handlers(launch)
            time.sleep(self.rng.uniform(0.0, 0.5))
        else:  # an instant of the launch (from its start), whatever was waited for already
            try:
                launch.proc.wait(timeout=max(self.rng.uniform(0.2, self.launch_s) - launch.seconds, 0.0))
            except subprocess.TimeoutExpired:
                pass
        return launch.seconds

    def pause(self, at: str | None = None) -> Fault:
        """SIGSTOP at a random instant, SIGCONT a random while later (a debugger, a suspended shell job, a VM
        paused): the launch must go on and finish by itself, exit 0, no restart."""
        launch = self.launch()
        delay = self.wait_instant(launch, at)
        fired = kill_group(launch.proc, signal.SIGSTOP)
        stopped = self.rng.uniform(*PAUSE_S)
        if fired:
            time.sleep(stopped)
            kill_group(launch.proc, signal.SIGCONT)
        rc = launch.wait()
        bad = check_exit(rc, launch.stderr, (0,))
        if not bad and rc == 0 and not (self.run_dir / "summary.json").exists():
            bad = "exit 0 after the pause, but the run did not finish"
        return Fault("paused", fired, rc, launch.seconds, f"stopped after {delay:.2f} s for {stopped:.2f} s", bad)

    def oom_kill(self, cgroup: MemoryCgroup, at: str | None = None) -> Fault:
        """Memory pressure: the launch runs in a memory cgroup whose limit is lowered to its usage at a random
        instant, so the kernel's OOM killer SIGKILLs it; the limit is then lifted (the next launch resumes)."""
        launch = start(cgroup.wrap(self.command), self.log_dir)
        _wait_handlers(launch)  # past Python's imports: the memory squeezed is the run's
        delay = self.wait_instant(launch, at)
        kills, hits = cgroup.oom_kills(), cgroup.failcnt()
        cgroup.squeeze(lambda: launch.proc.poll() is None)
        rc = launch.wait()
        cgroup.lift()
        kills, hits = cgroup.oom_kills() - kills, cgroup.failcnt() - hits
        bad = check_exit(rc, launch.stderr, (0, -signal.SIGKILL)) or checkpoint_intact(self.run_dir)
        if rc == -signal.SIGKILL and not kills:
            bad = bad or "killed by SIGKILL, but the cgroup counts no OOM kill"
        detail = f"limit lowered after {delay:.2f} s: oom_kill +{kills}, failcnt +{hits}"
        return Fault("oom kill", rc == -signal.SIGKILL and kills > 0, rc, launch.seconds, detail, bad)

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

    def disk_full(self, at: str | None = None) -> Fault:
        """The disk fills up at a random instant, leaving 0 to 600 KB free; freed once the launch ends.
        ``at="handlers"``: once the CLI is up, leaving nothing (the launch cannot finish: the short mode)."""
        assert self.disk is not None
        launch = self.launch()
        slack = 0 if at else self.rng.randint(0, 600_000)
        filler = self.disk / "filler"
        fired = False
        try:
            delay = self.wait_instant(launch, at)
            if launch.proc.poll() is None:
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
        """What a power cut or a failing card leaves: a SIGKILL (at ``at``, else at a drawn point: for the
        checkpoint, a checkpoint write or rename after which one is in place), then a cache
        shard or the checkpoint cut short or with one bit flipped. A bad shard is rebuilt; a bad checkpoint is
        refused with one line."""
        if what == "checkpoint" and at is None:  # a kill at a checkpoint write or rename, once one is in place
            point = self.rng.choice(["checkpoint_write", "checkpoint_rename"])
            first = 1 if (self.run_dir / "checkpoint.pt").exists() else 2
            at = f"{point}:{self.rng.randint(first, max(self.points.get(point, 1), first))}"
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


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (its ``SigCgt`` mask): edgetrgl's CLI installs its stop handlers first."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(status.split("SigCgt:")[1].split()[0], 16)
    return bool(mask >> (signal.SIGTERM - 1) & 1)


def _wait_handlers(launch: Launch) -> None:
    while launch.proc.poll() is None and not handlers_installed(launch.proc.pid):
        time.sleep(0.02)


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


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


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
