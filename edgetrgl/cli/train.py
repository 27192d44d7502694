"""``edgetrgl train``: train a network module by module (or end to end) and write a run folder."""

from __future__ import annotations

import argparse

from edgetrgl.cli.config_flags import PRECEDENCE, HelpFormatter, add_config_flags, add_set_flag, config_overrides


EPILOG = """examples:
  edgetrgl train                                   # ResNet-20, bundled MNIST sample, 4 modules, TRGL
  edgetrgl train --regime parallel --method vangl --epochs 5
  edgetrgl train --method infopro --transport on  # InfoPro with the transport term as a regulariser
  edgetrgl train --model resnet56 --dataset cifar10 --download --modules 8 --budget 2GB
  edgetrgl train --regime auto --budget 25MB --dry-run   # every way to fit (e2e with checkpointing or micro-batches, module-wise), no training
  edgetrgl train --config run.toml --seed 3        # file values, flags override
  edgetrgl train --set optim.lr=0.02 --set multiplier_step=0.5   # any config field, by its section or alone
  edgetrgl train --log tensorboard                 # also TensorBoard event files in OUT/tb/: tensorboard --logdir runs/
  edgetrgl train --config configs/paper.toml       # the paper's recipe (configs/ holds the presets)
  edgetrgl train --resume runs/latest              # continue after Ctrl-C, a kill or a power cut
  edgetrgl train --out runs/board --auto-resume    # start, resume or report: safe to run again and again
  edgetrgl train --init-from runs/latest --freeze-modules 2 --out runs/local   # fine-tune the last modules
  torchrun --nproc-per-node 2 -m edgetrgl train --regime pipeline --modules 4      # modules spread over 2 ranks
  torchrun --nproc-per-node 2 -m edgetrgl train --regime sequential --data-parallel  # each rank: half of each batch
"""


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a network with TRGL (or VanGL, or end to end)", epilog=EPILOG,
                       description="Train a network module by module and write a run folder. " + PRECEDENCE + ".",
                       formatter_class=HelpFormatter)
    a = p.add_argument
    a("--config", metavar="FILE.toml", help="read settings from a TOML file (flags and --set override it)")
    add_set_flag(p)
    a("--overwrite", action="store_true", help="replace a run already in --out")
    a("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    a("--auto-resume", action="store_true", help="start --out if new, resume it if unfinished, report it if finished")
    a("--quiet", action="store_true", help="no console output")
    a("--dry-run", action="store_true", help="plan, print the plan (with --regime auto, every way to fit that was "
                                              "weighed) and stop: nothing is trained or written")
    a("--plot", metavar="FILE.png", help="write the per-module test accuracy curve (needs matplotlib)")
    add_config_flags(p)  # one flag per config field, a group per section (edgetrgl/config.py)
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace):
    """Defaults, then the TOML file, then the flags and ``--set`` given on the command line."""
    from edgetrgl.config import TrainConfig, load_toml

    values = load_toml(args.config) if args.config else {}
    values.update(config_overrides(args, values))
    cfg = TrainConfig.from_dict(values)  # the budget string is parsed there, once
    from edgetrgl.metrics import check_sinks

    check_sinks(cfg.loggers)  # before minutes of planning and training, not after
    return cfg


def given_settings(args: argparse.Namespace, cfg) -> dict:
    """The settings this command gives, from its ``--config`` file and its flags: what a continued run
    (``--resume``, ``--auto-resume``) checks against the saved one, so an edited config file is refused
    rather than silently ignored."""
    from edgetrgl.config import load_toml

    keys = set(load_toml(args.config)) if args.config else set()
    return {k: getattr(cfg, k) for k in keys | set(config_overrides(args))}


def run(args: argparse.Namespace) -> int:
    from edgetrgl.errors import UserError
    from edgetrgl.api import plan, resume, train, train_or_resume

    if args.dry_run:
        if args.resume or args.auto_resume:
            raise UserError("--dry-run plans a new run: drop --resume/--auto-resume")
        plan(config_from_args(args), quiet=args.quiet)
        return 0
    if args.auto_resume:
        if args.resume or args.overwrite:
            raise UserError("--auto-resume decides itself whether to start or resume --out: drop --resume/--overwrite")

        cfg = config_from_args(args)
        result = train_or_resume(cfg, changes=given_settings(args, cfg), quiet=args.quiet)
    elif args.resume:
        if args.overwrite:
            raise UserError("--resume and --overwrite contradict each other")
        cfg = config_from_args(args)  # validates the flags given with --resume
        result = resume(args.resume, changes=given_settings(args, cfg), quiet=args.quiet)
    else:
        result = train(config_from_args(args), overwrite=args.overwrite, quiet=args.quiet)
    if args.plot:
        from edgetrgl.plots import plot_run

        plot_run(result.summary(), args.plot)
    return 0

