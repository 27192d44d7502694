"""``edgetrgl models``: list the registered models."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("models", help="list the models edgetrgl can build by name",
                            epilog="example:\n  edgetrgl models 'resnet*'", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrgl.models import list_models, model_info

    table = Table(title="models")
    table.add_column("name")
    table.add_column("description")
    for name in list_models(args.pattern):
        table.add_row(name, model_info(name))
    Console().print(table)
    return 0
