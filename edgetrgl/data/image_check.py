"""Find the image files PIL cannot decode, before a run trains on them; each file is decoded once.

A broken file in an image folder (a JPEG cut short by a copy, a zero-byte file, another program's
file with an image's name) would otherwise end the run with a traceback at the first batch that
draws it, perhaps hours in. Every file is decoded fully once; the verdicts are kept by
``(path, size, mtime)`` in a small JSON file under ``$EDGETRGL_CACHE`` (default
``~/.cache/edgetrgl``), so the next run decodes only new or changed files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import first_line

CHECK_FORMAT = 1  # bump when what counts as readable changes: older verdicts are then ignored
DRAFT_SIZE = (512, 512)  # JPEGs decode at a reduced scale (every coefficient is still read): much faster


def cache_dir() -> Path:
    """Where edgetrgl keeps what it can recompute: ``$EDGETRGL_CACHE`` or ``~/.cache/edgetrgl``."""
    return Path(os.environ.get("EDGETRGL_CACHE") or "~/.cache/edgetrgl").expanduser()


def unreadable_images(paths: list[str], root: Path) -> dict[str, str]:
    """The files among ``paths`` that PIL cannot decode, with why.

    Args:
        paths: image files (as the folder listing gives them).
        root: the folder they belong to; it names the verdict file, which keeps the verdicts of
            the files of the latest check under it.

    Returns:
        ``{path: reason}`` in the order of ``paths``; empty when every file decodes.
    """
    names = {path: os.path.relpath(path, root) for path in paths}  # the same whatever the working folder
    verdict_file = cache_dir() / "image-check" / (hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16] + ".json")
    known = _read_verdicts(verdict_file)
    stamps = {path: _stamp(path) for path in paths}
    verdicts = {path: known[names[path]][2] for path in paths
                if known.get(names[path], [None, None])[:2] == stamps[path]}
    todo = [path for path in paths if path not in verdicts]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            verdicts.update(zip(todo, pool.map(decode_problem, todo)))
        _write_verdicts(verdict_file, root, {names[path]: [*stamps[path], verdicts[path]] for path in paths})
    return {path: verdicts[path] for path in paths if verdicts[path]}


def decode_problem(path: str) -> str:
    """Why PIL cannot decode the image at ``path`` ("" if it can)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft(image.mode, DRAFT_SIZE)
            image.load()
    except UnidentifiedImageError:  # its message repeats the path
        return "not an image format PIL knows" if os.path.getsize(path) else "an empty file"
    except Exception as exc:  # noqa: BLE001  # a decoder fed bad bytes raises anything: the file is at fault
        return first_line(exc)
    return ""


def describe_unreadable(bad: dict[str, str]) -> str:
    """``"train/a/x.jpg (image file is truncated) and 2 more"``: the first bad file, and how many more."""
    path, reason = next(iter(bad.items()))
    more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
    return f"{path} ({reason}){more}"


def _stamp(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]  # vanished or unreadable: decoding it will say why
    return [st.st_size, st.st_mtime_ns]


def _read_verdicts(path: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: check everything again
        return {}
    if not isinstance(data, dict) or data.get("format") != CHECK_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return {p: v for p, v in data["files"].items() if isinstance(v, list) and len(v) == 3}


def _write_verdicts(path: Path, root: Path, files: dict[str, list]) -> None:
    """Write atomically; a cache that cannot be written only costs the next run the same check."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"format": CHECK_FORMAT, "root": str(root.resolve()), "files": files}),
                           encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
