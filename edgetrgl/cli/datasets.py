"""``edgetrgl datasets``: list the datasets edgetrgl can load by name."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("datasets", help="list the datasets edgetrgl can load by name")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrgl.data import dataset_info, list_datasets

    table = Table(title="datasets")
    table.add_column("name")
    table.add_column("description")
    for name in list_datasets():
        table.add_row(name, dataset_info(name))
    Console().print(table)
    return 0
