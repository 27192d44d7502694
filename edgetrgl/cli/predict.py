"""``edgetrgl predict``: classify image files with an exported model or a run folder."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  edgetrgl predict digits.ts seven.png three.jpg      # a model written by `edgetrgl export`
  edgetrgl predict runs/latest seven.png              # a run folder: its best module
  edgetrgl predict runs/latest --exit 2 seven.png

Prints one line per image: path, predicted class (and its name where the dataset has names),
probability. Images are converted to the model's channels and resized to its image size.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="classify image files with an exported model or a run", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", metavar="MODEL_OR_RUN", help="a file written by `edgetrgl export`, or a run folder")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ...)")
    p.add_argument("--exit", help="run folder only: best (default), last or a module number 1..K")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgetrgl.export import predict

    for prediction in predict(args.model, args.images, exit=args.exit):
        print(prediction.line())
    return 0
