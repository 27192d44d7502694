"""One small metrics writer: JSON lines to the run folder, a short line and progress bars on the console."""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class MetricsWriter:
    """Append records to ``metrics.jsonl`` and echo the important ones.

    Args:
        path: the JSON-lines file (None: console only).
        console: where to print; ``quiet`` silences it.
    """

    def __init__(self, path: str | Path | None, console: Console | None = None, quiet: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._fh = self.path.open("a", encoding="utf-8") if self.path is not None else None
        self._progress: Progress | None = None

    def log(self, record: dict[str, Any], echo: str | None = None) -> None:
        """Write one record (a ``time`` field is added); print ``echo`` if given."""
        record = {"time": round(time.time(), 3), **record}
        if self._fh is not None:
            self._fh.write(json.dumps(_jsonable(record)) + "\n")
            self._fh.flush()
        if echo and not self.quiet:
            self.console.print(echo)

    def warn(self, message: str) -> None:
        """A warning: always printed (unless quiet) and recorded."""
        self.log({"event": "warning", "message": message})
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/yellow] {message}")

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator["_Bar"]:
        """A progress bar for one module/epoch; a no-op bar when quiet or not a terminal."""
        if self.quiet or not self.console.is_terminal:
            yield _Bar(None, None)
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[info]}"), console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, info="")
            yield _Bar(bar, task)

    def tell(self) -> int:
        """Bytes written so far: a checkpoint records it, a resume truncates back to it."""
        return self._fh.tell() if self._fh is not None else 0

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _Bar:
    def __init__(self, bar: Progress | None, task: Any) -> None:
        self.bar, self.task = bar, task

    def advance(self, info: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=info)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
