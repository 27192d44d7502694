"""The console sink: echoed lines, warnings and progress bars, through rich, on stderr."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ConsoleSink:
    """Prints a record's ``echo`` line; silent when ``quiet``.

    Args:
        console: where to print.
        quiet: print nothing (no lines, no bars).
    """

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console, self.quiet = console, quiet

    def write(self, record: dict[str, Any], step: int, echo: str | None = None) -> None:
        if echo and not self.quiet:
            self.console.print(echo)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]warning:[/yellow] {message}")

    @contextmanager
    def progress(self, description: str, total: int) -> Iterator["Bar"]:
        """A progress bar for one module/epoch; a no-op bar when quiet or not a terminal."""
        if self.quiet or not self.console.is_terminal:
            yield Bar(None, None)
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[info]}"), console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total, info="")
            yield Bar(bar, task)

    def close(self) -> None:
        pass


class Bar:
    """One progress bar (or none): ``advance`` after each step."""

    def __init__(self, bar: Progress | None, task: Any) -> None:
        self.bar, self.task = bar, task

    def advance(self, info: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, info=info)
