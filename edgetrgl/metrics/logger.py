"""The logger the loops call: it numbers each record (its global step) and hands it to every sink."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol

from rich.console import Console

from edgetrgl.metrics.console import Bar, ConsoleSink
from edgetrgl.metrics.jsonl import JsonLines


class Sink(Protocol):
    """Where records go: JSON lines, the console, TensorBoard."""

    def write(self, record: dict[str, Any], step: int, echo: str | None = None) -> None: ...

    def close(self) -> None: ...


class MetricsWriter:
    """One logger over sinks: append records to ``metrics.jsonl``, echo the important ones, and
    (``tensorboard``) draw each module's numbers.

    Every record gets the next global step: its line number in ``metrics.jsonl`` (1, 2, ...;
    a resumed run goes on from the lines its truncated file holds).

    Args:
        path: the JSON-lines file (None: no file).
        console: where to print; ``quiet`` silences it.
        tensorboard: the TensorBoard event folder (None: no TensorBoard).
    """

    def __init__(self, path: str | Path | None, console: Console | None = None, quiet: bool = False, *,
                 tensorboard: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._jsonl = JsonLines(self.path) if self.path is not None else None
        self.step = self._jsonl.records if self._jsonl is not None else 0  # the last record's step
        self._console = ConsoleSink(self.console, quiet)
        sinks: list[Sink] = [self._console]
        if self._jsonl is not None:
            sinks.insert(0, self._jsonl)
        if tensorboard is not None:
            from edgetrgl.metrics.tensorboard import TensorBoard

            try:
                sinks.append(TensorBoard(tensorboard, first_step=self.step + 1))
            except BaseException:
                self.close_sinks(sinks)
                raise
        self.sinks = sinks

    def log(self, record: dict[str, Any], echo: str | None = None) -> None:
        """Write one record to every sink (a ``time`` field is added); print ``echo`` if given."""
        record = {"time": round(time.time(), 3), **record}
        self.step += 1
        for sink in self.sinks:
            sink.write(record, self.step, echo)

    def warn(self, message: str) -> None:
        """A warning: always printed (unless quiet) and recorded."""
        self.log({"event": "warning", "message": message})
        self._console.warn(message)

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator[Bar]:
        """A progress bar for one module/epoch; a no-op bar when quiet or not a terminal."""
        with self._console.progress(description, total) as bar:
            yield bar

    def tell(self) -> int:
        """Bytes written to ``metrics.jsonl`` so far: a checkpoint records it, a resume truncates back to it."""
        return self._jsonl.tell() if self._jsonl is not None else 0

    def sync(self) -> None:
        """Make every record written so far durable (before a checkpoint that counts them)."""
        if self._jsonl is not None:
            self._jsonl.sync()

    def close(self) -> None:
        self.close_sinks(self.sinks)
        self.sinks = []

    @staticmethod
    def close_sinks(sinks: list[Sink]) -> None:
        for sink in sinks:
            sink.close()


def check_sinks(loggers: list[str]) -> None:
    """Fail now, with one line, if a sink in ``loggers`` cannot be built here.

    Raises:
        UserError: ``tensorboard`` without the tensorboard package.
    """
    if "tensorboard" in loggers:
        from edgetrgl.metrics.tensorboard import summary_writer_class

        summary_writer_class()


def make_logger(cfg, run_dir: str | Path | None, console: Console | None = None, quiet: bool = False,
                main: bool = True) -> MetricsWriter:
    """The run's logger, as ``cfg.loggers`` asks: ``metrics.jsonl`` and ``tb/`` in ``run_dir``, the console.

    Args:
        cfg: the run's :class:`~edgetrgl.config.TrainConfig`.
        run_dir: the run folder (None: no files).
        console, quiet: where to print, and whether to print nothing.
        main: this process writes the run's records (under torchrun: rank 0 only; the others
            write nothing and print nothing).

    Raises:
        UserError: a sink that cannot be built here (tensorboard not installed).
    """
    folder = Path(run_dir) if run_dir and main else None
    loud = main and not quiet and "console" in cfg.loggers
    tensorboard = folder / "tb" if folder is not None and "tensorboard" in cfg.loggers else None
    return MetricsWriter(folder / "metrics.jsonl" if folder is not None else None, console, not loud,
                         tensorboard=tensorboard)
