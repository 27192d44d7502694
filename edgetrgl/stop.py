"""Stopping on request: SIGTERM, SIGINT and SIGHUP are honoured at the next safe point, from the
process's first line (the CLI installs the handlers before it parses its arguments).

A signal only sets a flag. The run looks at it where stopping loses nothing: between training
steps and after a module has finished (a checkpoint is written first, so ``--resume`` continues
exactly), and before the run folder is touched (planning, loading the data: nothing was written,
so the same command starts again). The process then exits with the conventional code, 128 + the
signal's number. A second Ctrl-C stops at once. SIGSTOP/SIGCONT need nothing: a stopped process
resumes where it was.

Under torchrun the handlers are left to torchrun: a rank that stopped on its own would leave the
others waiting in a collective; torchrun ends the workers and ``--max-restarts`` resumes them.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["Interrupted", "SIGNALS", "check", "install", "installed", "requested", "reset", "restore"]

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_received: int | None = None
_installed = False


class Interrupted(Exception):
    """A stop was requested and honoured: the run is checkpointed (or had written nothing yet)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def _on_signal(signum, frame) -> None:
    global _received
    if _received is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
        raise KeyboardInterrupt
    _received = signum


def install() -> dict:
    """Catch the stop signals (main thread only; not under torchrun). Returns the handlers replaced,
    for :func:`restore`; an empty dict when nothing was installed or it already was."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread() or "TORCHELASTIC_RUN_ID" in os.environ:
        return {}
    _installed = True
    return {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}


def restore(previous: dict) -> None:
    """Put back what :func:`install` replaced (the Python API's runs leave the caller's handlers as they were)."""
    global _installed
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    if previous:
        _installed = False


def installed() -> bool:
    return _installed


def requested() -> int | None:
    """The stop signal received, if any."""
    return _received


def reset() -> None:
    """Forget a stop request (a new run in the same process starts unasked)."""
    global _received
    _received = None


def check(where: str) -> None:
    """Stop here if asked to, before anything was written: one line, the conventional exit code.

    Raises:
        Interrupted: a stop signal arrived.
    """
    if _received is not None:
        name = signal.Signals(_received).name
        raise Interrupted(f"{name} received while {where}: nothing was written; run the same command again",
                          _received)
