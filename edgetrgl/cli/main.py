"""``edgetrgl``: one console script, one module per subcommand.

User errors (UserError) end with one line on stderr and exit code 2; programming errors keep their
traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from edgetrgl import stop
from edgetrgl.errors import DataWarning, UserError
from edgetrgl.stop import Interrupted

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are our one-line errors too (argparse already exits 2)."""

    def error(self, message: str) -> None:  # noqa: D102
        self.exit(EXIT_USER_ERROR, f"edgetrgl: error: {one_line(message)}\n")


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits on


def one_line(message: str) -> str:
    """A message as one line: a user's value holding a line break (a TOML key, an argument) is escaped."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in message)


def build_parser() -> argparse.ArgumentParser:
    from edgetrgl.cli import bench, datasets, devices, export, models, predict, train

    parser = _Parser(prog="edgetrgl", description="Module-wise training with transport regularization (TRGL) under a memory budget.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in (train, bench, export, predict, models, datasets, devices):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; ``argv`` None: the process's own (the console script, ``python -m``)."""
    previous = stop.install()  # first: a SIGTERM while torch imports or the run plans is honoured too
    try:
        args = build_parser().parse_args(argv)
        if args.command != "train":  # only a run has safe points to stop at: the others keep the default handlers
            stop.restore(previous)
            previous = {}
        return _run(args)
    finally:
        # in-process callers (the tests) get their handlers back; the program keeps them until it has exited:
        # a signal while the interpreter shuts down (torch's exit hooks take a second or two) then finds the
        # run over and changes nothing, where Python's own handler printed a KeyboardInterrupt traceback
        if argv is not None:
            stop.restore(previous)
        stop.reset()


def _run(args: argparse.Namespace) -> int:
    try:
        stop.check("starting")  # a signal that arrived while the arguments were read
        with warnings.catch_warnings():  # restores showwarning for in-process callers (the tests)
            warnings.showwarning = _one_line_warning(warnings.showwarning)
            return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"edgetrgl: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every run file is written atomically, so what is on disk is the last complete version of each
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"edgetrgl: error: no space left on the device{one_line(where)}: free some space, then continue "
              f"with --resume or --auto-resume (the last checkpoint is intact)", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as exc:
        print(f"edgetrgl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgetrgl: interrupted", file=sys.stderr)
        return 130


def _one_line_warning(show):
    """``warnings.showwarning`` that prints edgetrgl's own data warnings as one line (no source line);
    every other warning as Python would."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"edgetrgl: warning: {one_line(str(message))}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


if __name__ == "__main__":
    sys.exit(main())
