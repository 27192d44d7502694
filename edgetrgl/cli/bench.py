"""``edgetrgl bench``: peak memory and speed of edgetrgl against end-to-end backprop (memory issue)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="compare peak memory and speed against end-to-end backprop")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgetrgl.errors import UserError

    raise UserError("bench is not available yet")
