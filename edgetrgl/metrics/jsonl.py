"""The JSON-lines sink: ``metrics.jsonl``, one record a line, appended and flushed as it comes, fsync'd
at each checkpoint and on close."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


class JsonLines:
    """Append records to a JSON-lines file (opened for appending: a resume continues it).

    Args:
        path: the file; the lines it already holds (a resumed run's, cut back to its checkpoint)
            are counted in :attr:`records`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records = self.path.read_bytes().count(b"\n") if self.path.exists() else 0
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any], step: int, echo: str | None = None) -> None:
        """One line (the step is the line's number: it is not written)."""
        self._fh.write(json.dumps(jsonable(record)) + "\n")
        self._fh.flush()
        self.records += 1

    def tell(self) -> int:
        """Bytes written so far: a checkpoint records it, a resume truncates back to it."""
        return self._fh.tell()

    def sync(self) -> None:
        """Flush the records to the disk (a checkpoint counts them: they must be there with it)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self.sync()
            self._fh.close()


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings (JSON has no NaN) and keys as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
