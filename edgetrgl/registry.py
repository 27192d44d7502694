"""A registry of named things (local objectives, training regimes): what each registry shares.

Entries are looked up by name; the built-in ones are loaded on first use by a function the owning
package gives (its own modules, imported there by plain import statements, so the import graph
sees them and importing the registry costs nothing), and a user adds their own with ``register``.
An unknown name is the user's mistake: one line naming the flag and every registered name.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterable, TypeVar

from edgetrgl.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        flag: the option that names an entry, for the error message (``--method``).
        load_builtin: called once, on first use: imports the built-in entries and returns them
            (or registers them itself and returns nothing).

    Every entry has a ``name``: what the flag calls it.
    """

    def __init__(self, flag: str, load_builtin: Callable[[], Iterable[T] | None]) -> None:
        self.flag, self._load_builtin = flag, load_builtin
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, entry: T) -> T:
        """Add (or replace) ``entry`` under its ``name``; returns it."""
        if not getattr(entry, "name", ""):
            raise ValueError(f"a {self.flag} entry needs a name")
        self._load()  # the built-ins first: a user's entry comes after them, and replaces one by name
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Remove an entry (tests undo what they add); a name not there is ignored."""
        self._load()
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry called ``name``.

        Raises:
            UserError: no such entry (the message lists the registered ones).
        """
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name from a config file
            raise UserError(f"{self.flag} must be one of {', '.join(self.names())}; got {name!r}") from None

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def values(self) -> list[T]:
        self._load()
        return list(self._entries.values())

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: a built-in module registering itself calls back into register()
        for entry in self._load_builtin() or ():
            self.register(entry)
