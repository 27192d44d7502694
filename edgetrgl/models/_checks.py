"""Validation of builder options, so a bad value ends as one UserError line naming the option."""

from __future__ import annotations

from edgetrgl.errors import UserError


def positive_int(model: str, option: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise UserError naming ``model`` and ``option``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{model}: option {option} must be a positive integer, got {value!r}")
    return value


def positive_float(model: str, option: str, value: object) -> float:
    """Return ``value`` as a float if it is a number > 0, else raise UserError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise UserError(f"{model}: option {option} must be a positive number, got {value!r}")
    return float(value)
