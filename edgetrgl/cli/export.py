"""``edgetrgl export``: a finished run's early-exit network as TorchScript, ONNX or pt2, checked."""

from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  edgetrgl export runs/latest                                # best module, TorchScript, runs/latest/exit<k>.ts
  edgetrgl export runs/latest --exit 2 --format onnx --out digits.onnx
  edgetrgl export runs/latest --exit last --format pt2 --out digits.pt2

The exported model takes float images (N, C, H, W) on the 0..1 scale at the run's image size and
channels, and normalises them itself. It is checked against the run's own forward on the whole
test set; the exit code is 1 if any prediction differs.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a run's network, truncated at one module, for inference", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    p.add_argument("--exit", default="best", help="best (default: highest validation accuracy; test accuracy "
                                                "for a run without a validation split), last, or a module number 1..K")
    p.add_argument("--format", default="torchscript", help="torchscript (default), onnx (needs edgetrgl[onnx]) or pt2")
    p.add_argument("--out", metavar="FILE", help="file to write (default RUN_DIR/exit<k>.<ts|onnx|pt2>)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--data-dir", help="where the run's dataset is, if it moved (for the check)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgetrgl.export import export_run

    r = export_run(args.run_dir, exit=args.exit, format=args.format, out=args.out, overwrite=args.overwrite,
                   data_dir=args.data_dir)
    accuracy = "n/a" if r.test_accuracy is None else f"{100 * r.test_accuracy:.2f}%"
    if r.chosen_by == "test":
        print(f"warning: {args.run_dir} was trained without a validation split: --exit best was chosen on the "
              f"test set, so its test accuracy is optimistic (train with --val-fraction above 0)", file=sys.stderr)
    print(f"exported module {r.exit_module} of {r.num_modules} (--exit {args.exit}; test accuracy in the run "
          f"{accuracy}) as {r.format}: {r.path}")
    print(f"  size {r.size_bytes:,} bytes ({r.size_bytes / 2**20:.2f} MiB), {r.parameters:,} parameters "
          f"({100 * r.parameters / max(r.full_parameters, 1):.0f}% of the run's {r.full_parameters:,} with every head)")
    print("  input: float images (N, {channels}, {image_size}, {image_size}) on 0..1, normalised inside".format(**r.metadata["input"]))
    c = r.check
    if c is None:
        print(f"  check skipped: no runtime to load {r.format} (pip install 'edgetrgl[onnx]')")
        return 0
    verdict = "PASSED" if c.passed else "FAILED"
    print(f"  check on {c.samples:,} test images with {r.runtime}: max |logit diff| {c.max_abs_diff:.2e}, "
          f"identical predictions {100 * c.agreement:.2f}%, accuracy {100 * c.accuracy:.2f}%: {verdict}")
    return 0 if c.passed else 1
