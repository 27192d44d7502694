"""Process-level memory: peak RSS of a fresh process, measured against its own baseline.

A long-lived Python process is a poor place to measure a peak: glibc keeps freed memory mapped,
and the high-water mark of whatever ran before hides the peak of what runs now. So each
measurement runs in a **fresh interpreter** (:func:`run_fresh`), which takes its baseline after
imports and model build (:class:`RssBaseline`) and reports the peak above it.

On Linux the baseline also resets the kernel's high-water mark (``/proc/self/clear_refs``), so a
transient peak during imports cannot mask a smaller one that follows.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import psutil

from edgetrgl.errors import UserError


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes (``VmHWM``, else ``ru_maxrss``)."""
    status = _proc_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # macOS reports bytes, Linux KiB


def rss_bytes() -> int:
    """This process's resident set size now, in bytes."""
    return psutil.Process().memory_info().rss


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0). Returns True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class RssBaseline:
    """The process's memory right now, so that a later peak can be reported above it.

    Create it after imports and model build. If the kernel's peak mark can be reset, the baseline
    is the current RSS; otherwise it is the peak so far (a peak below it would not show: the
    delta is then a lower bound, and ``exact`` says so).
    """

    def __init__(self) -> None:
        self.exact = reset_peak_rss()
        self.baseline_bytes = rss_bytes() if self.exact else peak_rss_bytes()

    def delta(self) -> int:
        """Peak RSS since the baseline, minus the baseline, in bytes (never negative)."""
        return max(0, peak_rss_bytes() - self.baseline_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"peak_rss_bytes": self.delta(), "baseline_rss_bytes": self.baseline_bytes,
                "rss_baseline_exact": self.exact}


def run_fresh(module: str, payload: dict[str, Any], timeout: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python -m module --payload FILE --out FILE`` in a fresh interpreter; return its JSON.

    ``module`` must call :func:`worker_main` with its measurement function.

    Args:
        module: the worker module, e.g. ``"edgetrgl.bench.worker"``.
        payload: JSON-serialisable arguments for the worker's function.
        timeout: seconds before the worker is killed.
        env: extra environment variables for the worker.

    Returns:
        The dict the worker's function returned.

    Raises:
        UserError: the worker reported a user error (its one line is re-raised here).
        RuntimeError: the worker crashed, timed out or wrote no result (with its stderr tail).
    """
    with tempfile.TemporaryDirectory(prefix="edgetrgl-worker-") as tmp:
        payload_path, out_path = Path(tmp) / "payload.json", Path(tmp) / "result.json"
        payload_path.write_text(json.dumps(payload))
        cmd = [sys.executable, "-m", module, "--payload", str(payload_path), "--out", str(out_path)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **(env or {})})
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"worker {module} timed out after {timeout} s") from None
        result = json.loads(out_path.read_text()) if out_path.exists() else None
    if isinstance(result, dict) and "user_error" in result:
        raise UserError(result["user_error"])
    if proc.returncode != 0 or result is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"worker {module} failed with exit code {proc.returncode}:\n{tail}")
    return result


def worker_main(measure: Callable[[dict[str, Any]], dict[str, Any]], argv: list[str] | None = None) -> int:
    """Entry point of a worker: read ``--payload``, call ``measure(payload)``, write ``--out``.

    Without ``--out`` the result goes to stdout as one JSON line. A :class:`UserError` is written as
    ``{"user_error": message}`` (exit 2) so the parent can show the one line; anything else keeps
    its traceback on stderr (exit 1).
    """
    import argparse

    parser = argparse.ArgumentParser(description="run one measurement in this fresh process")
    parser.add_argument("--payload", required=True, help="JSON file with the measurement's arguments")
    parser.add_argument("--out", help="where to write the JSON result (default stdout)")
    args = parser.parse_args(argv)
    payload = json.loads(Path(args.payload).read_text())
    try:
        result, code = measure(payload), 0
    except UserError as exc:
        result, code = {"user_error": str(exc)}, 2
    except Exception:  # a programming error: keep the traceback for the parent's message
        traceback.print_exc()
        return 1
    text = json.dumps(result)
    if args.out:
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)  # the parent never reads half a file
    else:
        print(text)
    return code


def _proc_status() -> dict[str, int]:
    """``VmRSS``/``VmHWM`` from ``/proc/self/status`` in bytes; empty where there is no /proc."""
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024  # reported in kB (KiB)
    except (OSError, ValueError, IndexError):
        return {}
    return values


def open_file_count() -> int:
    """Open file descriptors of this process (a leak shows as growth from module to module)."""
    try:
        return psutil.Process().num_fds()
    except (AttributeError, psutil.Error):  # num_fds is POSIX-only
        return -1
