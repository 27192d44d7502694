"""The config's fields as command-line flags, generated: one flag per field, grouped by section, and
``--set [SECTION.]KEY=VALUE`` for any field.

Nothing here names a field: the flags, their help, their types and their choices come from the
section dataclasses of :mod:`edgetrgl.config` (each field's :func:`~edgetrgl.config.setting`), so a
new field is one line there. Precedence, lowest first: the fields' defaults, the ``--config`` file,
the flags and ``--set`` (a field given by both is an error, not a silent order).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import types
import typing
from typing import Any, Callable, NamedTuple, Union

from edgetrgl.config import SECTIONS, parse_size, section_of
from edgetrgl.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

PRECEDENCE = ("Settings, lowest precedence first: the defaults shown, the --config file, then the flags and "
              "--set (every setting below is also --set SECTION.KEY=VALUE or KEY=VALUE; lists and tables as "
              "TOML or JSON literals, e.g. --set model_options='{width = 4}')")


def _regimes() -> list:
    from edgetrgl.training.regimes import regimes

    return regimes()


def _objectives() -> list:
    from edgetrgl.objectives import objectives

    return objectives()


def _sinks() -> list:
    from edgetrgl.metrics.sinks import sinks

    return sinks()


# registries a field's choices may name (``choices="regimes"``), and a field's help may quote
# (``{regimes.needs_cache}``): read when the command line is parsed or its help printed, so a regime
# (objective, sink) registered after the parser was built is a valid choice and shows in the help
REGISTRIES: dict[str, Callable[[], list]] = {"regimes": _regimes, "objectives": _objectives, "sinks": _sinks}
_QUOTE = re.compile(r"\{(" + "|".join(REGISTRIES) + r")(?:\.(\w+))?\}")
# choices beside a registry's entries: (name, help); --regime auto is resolved by the planner to one
# of the registered regimes (planning/solver.py)
EXTRA_CHOICES: dict[str, list[tuple[str, str]]] = {"regimes": [
    ("auto", "weigh e2e (with checkpointing, micro-batches) against module-wise training under --budget and "
             "pick the most exact way that fits within 2x of the fastest")]}


def registry_names(registry: str) -> list[str]:
    return [entry.name for entry in REGISTRIES[registry]()] + [name for name, _ in EXTRA_CHOICES.get(registry, [])]


def registry_help(registry: str) -> str:
    """``name: help`` of every entry of ``registry``, for the help of the field that chooses one."""
    described = [(entry.name, entry.help) for entry in REGISTRIES[registry]()] + EXTRA_CHOICES.get(registry, [])
    return "; ".join(f"{name}: {help}" for name, help in described)


def quote_registries(text: str, escape_percent: bool = False) -> str:
    """``text`` with each ``{registry}`` or ``{registry.attribute}`` replaced by what the registry holds now.

    ``{regimes}``: the names. ``{regimes.needs_cache}``: the names whose attribute (or trait) is set.
    A text attribute groups the names by its value (``{regimes.epochs_help}``: "per module
    (sequential), in total (e2e, parallel)"); a tuple one lists each entry's (``{objectives.options}``:
    "infopro: ixx_1, ..."). ``escape_percent``: the quoted text is for argparse (``%`` as ``%%``).
    """
    def quote(match: re.Match) -> str:
        text = describe(match)
        return text.replace("%", "%%") if escape_percent else text

    def describe(match: re.Match) -> str:
        entries, attribute = REGISTRIES[match.group(1)](), match.group(2)
        if attribute is None:
            return ", ".join(entry.name for entry in entries)
        values = [(entry.name, _attribute(entry, attribute)) for entry in entries]
        if all(isinstance(value, str) for _, value in values):
            groups: dict[str, list[str]] = {}
            for name, value in values:
                groups.setdefault(value, []).append(name)
            return ", ".join(f"{value} ({', '.join(names)})" for value, names in groups.items())
        if all(isinstance(value, tuple) for _, value in values):
            return "; ".join(f"{name}: {', '.join(value)}" for name, value in values if value) or "none"
        return ", ".join(name for name, value in values if value) or "none"

    return _QUOTE.sub(quote, text)


def _attribute(entry: Any, name: str) -> Any:
    """An entry's attribute, or its traits' (a regime's ``needs_cache``)."""
    if hasattr(entry, name):
        return getattr(entry, name)
    return getattr(entry.traits, name)


class ConfigField(NamedTuple):
    """One field of a config section, with its resolved type and its CLI metadata."""

    section: str
    name: str
    hint: Any
    default: Any
    meta: dict

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> Any:
        choices = self.meta.get("choices")
        return LazyChoices(lambda: registry_names(choices)) if isinstance(choices, str) else choices


class LazyChoices:
    """A registry's names, looked up each time argparse checks a value or prints the help."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names

    def __iter__(self):
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()

    def __len__(self) -> int:
        return len(self._names())


def config_fields() -> list[ConfigField]:
    """Every field of every section, in the sections' order."""
    found = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            found.append(ConfigField(section, f.name, hints[f.name], default, dict(f.metadata)))
    return found


def field_named(name: str) -> ConfigField:
    return next(f for f in config_fields() if f.name == name)


# ---- text to typed values --------------------------------------------------------------------
def parse_value(f: ConfigField, text: str) -> Any:
    """``text`` as field ``f``'s type: ints, floats, booleans (true/false, on/off), None (none),
    lists (``3,6`` or a literal ``[3, 6]``), tables (``{width = 4}`` or JSON), sizes (``2GB``).

    Raises:
        ValueError: naming what the field takes.
    """
    if f.meta.get("parse") == "size":
        if text.strip().lower() in ("none", "null"):
            return None
        try:
            return parse_size(text)
        except UserError as exc:
            raise ValueError(str(exc)) from None
    value = _parse(f.hint, text)
    choices = f.choices
    if isinstance(value, list) and choices is not None:  # argparse checks scalars, not list items
        for item in value:
            if item not in choices:
                raise ValueError(f"invalid choice: {item!r} (choose from {', '.join(map(repr, choices))})")
    return value


def _parse(hint: Any, text: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        for arm in (a for a in args if a is not type(None)):
            try:
                return _parse(arm, text)
            except ValueError:
                pass
        raise ValueError(f"expected {_describe(hint)}, got {text!r}")
    if hint is bool:
        value = {"true": True, "on": True, "yes": True, "1": True,
                 "false": False, "off": False, "no": False, "0": False}.get(text.strip().lower())
        if value is None:
            raise ValueError(f"expected true or false, got {text!r}")
        return value
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"expected {_describe(hint)}, got {text!r}") from None
    if hint is str or hint is Any:
        return text
    if origin is list:
        items = _literal(text) if text.lstrip().startswith("[") else [t.strip() for t in text.split(",") if t.strip()]
        if not isinstance(items, list):
            raise ValueError(f"expected {_describe(hint)}, got {text!r}")
        (item_hint,) = args or (Any,)
        try:
            return [item if isinstance(item, item_hint) and not isinstance(item, bool) else _parse(item_hint, str(item))
                    for item in items]
        except ValueError:
            raise ValueError(f"expected {_describe(hint)}, got {text!r}") from None
    if origin is dict or hint is dict:
        value = _literal(text)
        if not isinstance(value, dict):
            raise ValueError(f"expected {_describe(hint)}, got {text!r}")
        return value
    raise TypeError(f"no command-line parsing for a field of type {hint!r}")  # a new type: teach _parse


def _literal(text: str) -> Any:
    """A TOML value (``[3, 6]``, ``{width = 4}``), else JSON (``{"width": 4}``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"expected a TOML or JSON literal, got {text!r}") from None


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is list:
        items = {int: "integers", float: "numbers", str: "strings"}.get(args[0] if args else None, "values")
        return f"a list of {items}, e.g. 1,2 or [1, 2]"
    if origin is dict or hint is dict:
        return "a table, e.g. '{width = 4}' or '{\"width\": 4}'"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "none"}.get(hint, str(hint))


def _as_argparse_type(f: ConfigField) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse_value(f, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = f.name
    return convert


# ---- the parser ------------------------------------------------------------------------------
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's examples as written; fills in what a field's help quotes of the registries,
    and appends a registry's descriptions to the help of a field that chooses from it, when the help
    is printed (not when the parser is built)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = quote_registries(action.help or "", escape_percent=True)
        registry = getattr(action, "registry", None)
        return f"{text}: {registry_help(registry).replace('%', '%%')}" if registry is not None else text


def add_config_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None,
                     defaults: dict[str, Any] | None = None) -> None:
    """Add one flag per config field to ``parser``, in an argument group per section.

    Args:
        parser: the subcommand's parser.
        only: the fields to add (default: all of them).
        defaults: the flags' own defaults, shown in the help (for a command without a config file,
            like bench). None: every flag defaults to None, so that only the flags a user gives
            override the config file, and the help shows the field's default.
    """
    groups: dict[str, Any] = {}
    for f in config_fields():
        if only is not None and f.name not in only:
            continue
        if f.section not in groups:
            doc = re.sub(r":\w+:`([^`]+)`", r"\1", (SECTIONS[f.section].__doc__ or "").strip().splitlines()[0])
            groups[f.section] = parser.add_argument_group(f"[{f.section}]", doc)
        default = None if defaults is None else defaults.get(f.name, f.default)
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": _help(f, default, defaults is not None)}
        if f.hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _as_argparse_type(f)
            if f.choices is not None and typing.get_origin(f.hint) is not list:
                kwargs["choices"] = f.choices  # argparse checks it (lists: parse_value checks each item)
            if "metavar" in f.meta or "choices" not in kwargs:
                kwargs["metavar"] = f.meta.get("metavar") or ("TABLE" if f.hint == dict[str, Any] else f.name.upper())
            if f.meta.get("extend"):
                kwargs["action"] = "append"
            elif typing.get_origin(f.hint) in (Union, types.UnionType) and bool in typing.get_args(f.hint):
                kwargs.update(nargs="?", const=True)  # --checkpoint-blocks alone: on
        action = groups[f.section].add_argument(f.flag, **kwargs)
        if isinstance(f.meta.get("choices"), str):
            action.registry = f.meta["choices"]


def _help(f: ConfigField, default: Any, fixed: bool) -> str:
    text = f.meta.get("help", "")
    shown = default if fixed else f.default
    if shown is not None and shown != {} and "(default" not in text:
        text += f" (default {_show(shown)})"
    return text.replace("%", "%%")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return repr(value) if value == "" else str(value)


def add_set_flag(parser: argparse.ArgumentParser) -> None:
    """``--set [SECTION.]KEY=VALUE``, repeatable: any config field, parsed by its type."""
    parser.add_argument("--set", action="append", default=[], type=_parse_set, metavar="[SECTION.]KEY=VALUE",
                        dest="set_values", help="set any config field, e.g. --set optim.lr=0.02 --set "
                        "multiplier_step=0.5 (repeatable; see the groups below)")


def _parse_set(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"takes [SECTION.]KEY=VALUE, got {text!r}")
    section, _, name = key.strip().rpartition(".")
    name = name.replace("-", "_")
    owner = section_of(name)
    if owner is None:
        raise argparse.ArgumentTypeError(f"unknown config key {key.strip()!r} (the keys are in `edgetrgl train --help`)")
    if section and section != owner:
        raise argparse.ArgumentTypeError(f"{name} is in [{owner}], not [{section}]: --set {owner}.{name}=...")
    try:
        return name, parse_value(field_named(name), value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{key.strip()}: {exc}") from None


def config_overrides(args: argparse.Namespace, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fields the command line sets: the flags given, and ``--set``.

    Args:
        args: the parsed command line.
        base: the values below the command line (the config file's), which a list flag with
            ``extend`` (``--log``) adds to.

    Raises:
        UserError: a field set twice (by a flag and ``--set``, or by two ``--set``).
    """
    base = base or {}
    values: dict[str, Any] = {}
    for f in config_fields():
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if f.meta.get("extend"):
            merged = list(base.get(f.name, f.default))
            for item in (item for given in value for item in given):
                merged += [item] if item not in merged else []
            value = merged
        values[f.name] = value
    for name, value in getattr(args, "set_values", []):
        if name in values:
            raise UserError(f"{name} is given twice on the command line (a flag and --set, or two --set)")
        values[name] = value
    return values
