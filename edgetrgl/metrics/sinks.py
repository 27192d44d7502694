"""The sink registry: what ``--log NAME`` may name, how each sink is built, and what it leaves in the
run folder. Adding a sink is one file and one ``register(...)``:

    from edgetrgl.metrics.sinks import SinkKind, register
    register(SinkKind("mine", help="my dashboard (OUT/mine/)", owns=("mine",),
                      build=lambda folder, first_step: MySink(folder / "mine", first_step)))

The run asks the registry, never a name: the flag's choices and help, the check at the start of a
run (an unknown name, or a sink whose package is missing, is one line before anything is planned),
which sinks a run builds, and what ``--overwrite`` deletes of an earlier run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from edgetrgl.registry import Registry


class Sink(Protocol):
    """Where records go: JSON lines, the console, TensorBoard."""

    def write(self, record: dict[str, Any], step: int, echo: str | None = None) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SinkKind:
    """A metric sink ``--log`` can name.

    Attributes:
        name: what ``--log`` calls it.
        help: one line for ``--help``.
        owns: files and folders it writes in the run folder (``--overwrite`` deletes them).
        build: ``(run folder, first step) -> sink``, called only for a run that writes a folder;
            None for the two the writer itself holds (jsonl: the run's record; console: warnings and
            progress, printed or not).
        check: raises a UserError, at the start of a run, when the sink cannot be built here.
    """

    name: str
    help: str
    owns: tuple[str, ...] = ()
    build: Callable[[Path, int], Sink] | None = None
    check: Callable[[], Any] | None = None


def _tensorboard(folder: Path, first_step: int) -> Sink:
    from edgetrgl.metrics.tensorboard import TensorBoard

    return TensorBoard(folder / "tb", first_step=first_step)


def _tensorboard_installed() -> None:
    from edgetrgl.metrics.tensorboard import summary_writer_class

    summary_writer_class()


def _load_builtin() -> list[SinkKind]:
    return [SinkKind("jsonl", "OUT/metrics.jsonl, the run's record (always kept)", owns=("metrics.jsonl",)),
            SinkKind("console", "lines and progress bars on the terminal"),
            SinkKind("tensorboard", "event files in OUT/tb/ (the tensorboard extra)", owns=("tb",),
                     build=_tensorboard, check=_tensorboard_installed)]


_REGISTRY: Registry[SinkKind] = Registry("--log", _load_builtin)

register = _REGISTRY.register
unregister = _REGISTRY.remove
get_sink = _REGISTRY.get
sink_names = _REGISTRY.names
sinks = _REGISTRY.values


def check_sinks(loggers: Iterable[str]) -> None:
    """Fail now, with one line, if a sink in ``loggers`` is unknown or cannot be built here.

    Raises:
        UserError: an unknown name (the message lists the registered ones), or ``tensorboard``
            without the tensorboard package.
    """
    for name in loggers:
        kind = get_sink(name)
        if kind.check is not None:
            kind.check()


def owned_paths() -> list[str]:
    """What every registered sink writes in a run folder (what ``--overwrite`` clears)."""
    return [path for kind in sinks() for path in kind.owns]
