"""The one exception type that means "the user asked for something we cannot do"."""


class UserError(Exception):
    """Bad input from the user: the CLI prints it as one line and exits with code 2.

    Programming errors must not use this class, so they keep their traceback.
    """
