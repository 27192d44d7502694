"""``load_weights_file``: ``torch.load`` of a file the user named, failing with one reason in words.

A user may hand any file where weights belong (a text file, another program's zip, an empty file,
a pickle of something else). torch's weights-only unpickler then raises whatever the bytes
provoke (``KeyError``, ``IndexError``, ``UnpicklingError``, ...), so the file's format is
checked first, and whatever ``torch.load`` still raises is a fault of the file, not of our code.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from edgetrgl.errors import UserError, first_line

PICKLE_PROTOCOL_2 = b"\x80"  # torch's legacy (non-zip) format starts with a pickle of protocol 2 or later


class NotAWeightsFile(UserError):
    """The file is not one ``torch.save`` wrote; ``reason`` says what it is instead, in a few words."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def load_weights_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, for a file given by the user.

    Raises:
        FileNotFoundError, IsADirectoryError: as ``open`` does (the caller names what was expected).
        NotAWeightsFile: empty, a zip or pickle torch did not write, text, or unreadable.
    """
    path = Path(path)
    try:
        reason = _format_problem(path)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:  # no permission, an I/O error
        raise NotAWeightsFile(path, f"unreadable ({exc.strerror or first_line(exc)})") from None
    if reason:
        raise NotAWeightsFile(path, reason)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: the one error line says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise NotAWeightsFile(path, "a pickle of objects other than tensors (weights-only loading refuses "
                                        "it)") from None
        raise NotAWeightsFile(path, f"a damaged pickle ({first_line(exc)})") from None
    except OSError as exc:
        raise NotAWeightsFile(path, f"unreadable ({exc.strerror or first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001  # the unpickler raises anything the bytes provoke: the file is bad
        raise NotAWeightsFile(path, f"damaged or not written by torch.save ({type(exc).__name__}: "
                                    f"{first_line(exc)})") from None


def _format_problem(path: Path) -> str:
    """Why ``path`` cannot be a torch file, judged from its first bytes ("" if it may be one)."""
    with path.open("rb") as fh:
        head = fh.read(64)
    if not head:
        return "an empty file"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            return f"a damaged zip archive ({first_line(exc)})"
        if not any(name.endswith("/data.pkl") for name in names):
            shown = names[0] if names else "nothing"
            return f"a zip archive that torch.save did not write (it holds {shown!r}, no data.pkl)"
        return ""
    if head.startswith(PICKLE_PROTOCOL_2):
        return ""
    if _looks_like_text(head):
        return f"a text file (it starts with {head.decode('utf-8', 'replace').splitlines()[0][:30]!r})"
    return f"not a PyTorch file (it starts with bytes {head[:8].hex(' ')})"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # cut mid-character at byte 64, or binary
        text = head[:-3].decode("utf-8", "replace")
        if "\ufffd" in text:
            return False
    return all(c.isprintable() or c in "\n\r\t" for c in text)
