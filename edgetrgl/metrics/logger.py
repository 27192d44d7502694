"""The logger the loops call: it numbers each record (its global step) and hands it to every sink."""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console

from edgetrgl.metrics.console import Bar, ConsoleSink
from edgetrgl.metrics.jsonl import JsonLines
from edgetrgl.metrics.sinks import Sink, check_sinks, get_sink


class MetricsWriter:
    """One logger over sinks: append records to ``metrics.jsonl``, echo the important ones, and hand
    each record to the other sinks the run asked for (TensorBoard, or one a user registered).

    Every record gets the next global step: its line number in ``metrics.jsonl`` (1, 2, ...;
    a resumed run goes on from the lines its truncated file holds).

    Args:
        path: the JSON-lines file (None: no file).
        console: where to print; ``quiet`` silences it.
        sinks: builders of the other sinks, each called with the first record's step (above 1 on
            a resume: a sink drops what it holds from that step on).
    """

    def __init__(self, path: str | Path | None, console: Console | None = None, quiet: bool = False, *,
                 sinks: Sequence[Callable[[int], Sink]] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._jsonl = JsonLines(self.path) if self.path is not None else None
        self.step = self._jsonl.records if self._jsonl is not None else 0  # the last record's step
        self._console = ConsoleSink(self.console, quiet)
        built: list[Sink] = [self._console]
        if self._jsonl is not None:
            built.insert(0, self._jsonl)
        try:
            built += [build(self.step + 1) for build in sinks]
        except BaseException:
            self.close_sinks(built)
            raise
        self.sinks = built

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


def make_logger(cfg, run_dir: str | Path | None, console: Console | None = None, quiet: bool = False,
                main: bool = True) -> MetricsWriter:
    """The run's logger, as ``cfg.loggers`` asks: ``metrics.jsonl`` in ``run_dir``, the console, and
    the other registered sinks named there (:mod:`edgetrgl.metrics.sinks`).

    Args:
        cfg: the run's :class:`~edgetrgl.config.TrainConfig`.
        run_dir: the run folder (None: no files).
        console, quiet: where to print, and whether to print nothing.
        main: this process writes the run's records (under torchrun: rank 0 only; the others
            write nothing and print nothing).

    Raises:
        UserError: an unknown sink, or one that cannot be built here (tensorboard not installed).
    """
    check_sinks(cfg.loggers)
    folder = Path(run_dir) if run_dir and main else None
    loud = main and not quiet and "console" in cfg.loggers
    builders = [] if folder is None else [
        functools.partial(kind.build, folder) for kind in map(get_sink, cfg.loggers) if kind.build is not None]
    return MetricsWriter(folder / "metrics.jsonl" if folder is not None else None, console, not loud, sinks=builders)
