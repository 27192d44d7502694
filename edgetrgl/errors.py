"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits with code 2.

    Programming errors must not use this class, so they keep their traceback.
    """


class DataWarning(UserWarning):
    """Something about the user's data that the run works around (skipped files): the CLI prints it as
    one ``edgetrgl: warning:`` line."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message for a one-line error (its type's name if it has none,
    as an ``EOFError`` from an empty file)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
