"""``edgetrgl datasets``: list the datasets edgetrgl can load by name, and where each one was found."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("datasets", help="list the datasets edgetrgl can load by name, and where each is")
    parser.add_argument("--data-dir", default=None,
                        help="look here instead of the defaults ($EDGETRGL_DATA, Debian's folders, "
                             "~/.cache/edgetrgl/data)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrgl.data import dataset_info, dataset_location, list_datasets

    table = Table(title="datasets")
    table.add_column("name")
    table.add_column("description")
    table.add_column("found at", overflow="fold")  # a path is no use cut short
    for name in list_datasets():
        table.add_row(name, dataset_info(name), dataset_location(name, args.data_dir))
    Console().print(table)
    return 0
