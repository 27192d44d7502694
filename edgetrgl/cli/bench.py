"""``edgetrgl bench``: peak memory and speed of edgetrgl against end-to-end backprop."""

from __future__ import annotations

import argparse

from edgetrgl.cli.config_flags import HelpFormatter, add_config_flags

SHARED = ("model", "modules", "split", "batch_size", "device", "cache_dtype")

EPILOG = """examples:
  edgetrgl bench                                    # ResNet-20, 3x32x32, batch 64, K=4, on this machine
  edgetrgl bench --compare e2e,checkpoint,offload --json bench.json --plot bench.png
  edgetrgl bench --compare checkpoint,sequential-trgl+ckpt,sequential-trgl+bf16 --plot front.png
  edgetrgl bench --estimate --model resnet110 --image-size 96 --modules 8   # fake tensors: seconds
  edgetrgl bench --compare e2e+mb8,checkpoint+mb8,sequential-trgl+mb8,sequential-trgl+ckpt+mb8 --cache-samples 60000
  edgetrgl bench --model resnet20 --model-option width=4 --image-size 16 --steps 2

Every method runs in a fresh process: the RSS column is that process's peak above its own
baseline after imports and model build. Sizes are binary (MiB, GiB). A method name may carry
the step options of `edgetrgl train` as suffixes: +ckpt (--checkpoint-blocks, ours only), +bf16
or +fp16 (--precision), +mbN (micro-batches of N samples, gradients accumulated to the batch:
--micro-batch; every method, baselines included). --cache-samples N keeps the sequential methods'
host cache of N samples in the measuring process (RSS counts it, as on a Pi or a Jetson, where
it shares the step's RAM) and adds it to the estimate. The Pareto front (*) holds the methods no other is both smaller and faster
than (an estimate counts FLOPs for time).
"""


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="compare peak memory and speed against end-to-end backprop", epilog=EPILOG,
                       formatter_class=HelpFormatter)
    a = p.add_argument
    a("--compare", default="e2e", help="baselines beside ours, e2e[,checkpoint,offload], and variants with step "
      "options, e.g. sequential-trgl+ckpt,sequential-trgl+bf16,e2e+mb8 (default e2e)")
    a("--model-option", action="append", default=[], metavar="KEY=VALUE", help="model option, e.g. width=4 (repeatable)")
    a("--image-size", type=int, default=32)
    a("--in-channels", type=int, default=3)
    a("--num-classes", type=int, default=10)
    a("--steps", type=int, default=3, help="timed steps per method (default 3; the median is reported)")
    a("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    a("--threads", type=int, help="torch threads in each measuring process (default: torch's choice)")
    a("--cache-samples", type=int, default=0, metavar="N", help="samples in the sequential methods' host cache, "
      "counted in RSS and in the estimate's step + cache (default 0: not counted; Fashion-MNIST: 70000)")
    a("--estimate", action="store_true", help="estimate peaks with fake tensors instead of running")
    a("--json", metavar="FILE", help="write the results as JSON")
    a("--plot", metavar="FILE.png", help="write a memory-time chart with the Pareto front (needs matplotlib: pip install edgetrgl[plot])")
    # the settings bench shares with `edgetrgl train`, from the config's fields (a smaller batch by default)
    add_config_flags(p, only=SHARED, defaults={"batch_size": 64, "cache_dtype": "fp32"})
    p.set_defaults(handler=run)


def parse_options(pairs: list[str]) -> dict:
    """``["width=4", "dropout=0.1"]`` -> ``{"width": 4, "dropout": 0.1}`` (ints, floats, booleans, strings)."""
    from edgetrgl.errors import UserError

    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--model-option takes KEY=VALUE, got {pair!r}")
        value: object = text
        for convert in (int, float):
            try:
                value = convert(text)
                break
            except ValueError:
                pass
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        options[key.strip()] = value
    return options


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    from pathlib import Path

    from rich.console import Console

    from edgetrgl.bench import BenchSetting, bench_table, parse_methods, run_bench, write_json, write_plot
    from edgetrgl.errors import UserError
    from edgetrgl.planning.device import resolve_device

    methods = parse_methods(args.compare)
    if not isinstance(args.modules, int):
        raise UserError(f"--modules must be a positive integer for bench, got {args.modules!r}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be a positive integer, got {args.threads}")
    device = "cpu" if args.estimate else resolve_device(args.device).type  # fake tensors need no device
    setting = BenchSetting(model=args.model, image_size=args.image_size, in_channels=args.in_channels,
                           num_classes=args.num_classes, batch_size=args.batch_size, modules=args.modules,
                           split=args.split, device=device, steps=args.steps, warmup=args.warmup,
                           cache_samples=args.cache_samples, cache_dtype="fp32" if args.cache_dtype == "auto" else args.cache_dtype,
                           model_options=parse_options(args.model_option))
    if args.plot:  # fail before minutes of measuring, not after
        try:
            import matplotlib  # noqa: F401  (only checking that it is there)
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install edgetrgl[plot]") from None
    report = run_bench(setting, methods, estimate=args.estimate, console=Console(stderr=True), threads=args.threads)
    report["command"] = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])  # as invoked
    out = Console()
    if not out.is_terminal:
        out = Console(width=130)  # piped output: do not wrap the table at 80 columns
    out.print(bench_table(report))
    for note in report["notes"]:
        out.print(f"note: {note}")
    if args.json:
        write_json(report, args.json)
    if args.plot:
        write_plot(report, args.plot)
    return 0
