"""``edgetrgl train``: train a network module by module (or end to end) and write a run folder."""

from __future__ import annotations

import argparse

from edgetrgl.config import (CACHE_DTYPES, CACHE_MODES, DEVICES, LR_SCHEDULES, OFFLOAD_MODES,
                             PIPELINE_SPLITS, PRECISION_CHOICES, TAU_SCHEDULES, TRANSPORTS)

EPILOG = """examples:
  edgetrgl train                                   # ResNet-20, bundled MNIST sample, 4 modules, TRGL
  edgetrgl train --regime parallel --method vangl --epochs 5
  edgetrgl train --method infopro --transport on  # InfoPro with the transport term as a regulariser
  edgetrgl train --model resnet56 --dataset cifar10 --download --modules 8 --budget 2GB
  edgetrgl train --config run.toml --seed 3        # file values, flags override
  edgetrgl train --config configs/paper.toml       # the paper's recipe (configs/ holds the presets)
  edgetrgl train --resume runs/latest              # continue after Ctrl-C, a kill or a power cut
  edgetrgl train --out runs/board --auto-resume    # start, resume or report: safe to run again and again
  edgetrgl train --init-from runs/latest --freeze-modules 2 --out runs/local   # fine-tune the last modules
  torchrun --nproc-per-node 2 -m edgetrgl train --regime pipeline --modules 4      # modules spread over 2 ranks
  torchrun --nproc-per-node 2 -m edgetrgl train --regime sequential --data-parallel  # each rank: half of each batch
"""


def add_parser(sub) -> None:
    from edgetrgl.training.regimes import regime_names, regimes

    p = sub.add_parser("train", help="train a network with TRGL (or VanGL, or end to end)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    # every default is None, so that only the flags a user gives override the config file
    a("--config", metavar="FILE.toml", help="read settings from a TOML file (flags override it)")
    a("--model", help="model name (see `edgetrgl models`); default resnet20")
    a("--dataset", help="dataset name (see `edgetrgl datasets`); default mnist5k, bundled")
    a("--data-dir", help="dataset root (torchvision sets) or ImageFolder root")
    a("--download", action="store_true", default=None, help="let torchvision download the dataset")
    a("--train-fraction", type=float, help="train on this stratified fraction of the training split")
    a("--no-augment", dest="augment", action="store_false", default=None, help="no random crop / flip")
    a("--modules", type=_modules, help="K, the number of modules (default 4), or 'auto': the fewest that fit --budget")
    a("--split", choices=("equal", "balanced"), help="equal depth (default) or balanced by estimated memory")
    a("--micro-batch", type=int, help="accumulate gradients over micro-batches of this size")
    a("--boundaries", help="explicit first block of modules 2..K, e.g. 3,6 (overrides --modules)")
    a("--regime", choices=regime_names(), help="default sequential; " + "; ".join(f"{r.name}: {r.help}" for r in regimes()))
    from edgetrgl.objectives import objective_names, objectives

    # no argparse choices: an unknown name is one `edgetrgl: error:` line naming the registered ones
    a("--method", metavar="{" + ",".join(objective_names()) + "}",
      help="the local objective, default trgl; " + "; ".join(f"{o.name}: {o.help}" for o in objectives()))
    a("--transport", choices=TRANSPORTS, help="the transport term on the objective: auto (default: on for trgl "
                                              "only), on (e.g. --method infopro --transport on) or off")
    a("--tau", type=float, help="transport step size tau (default 10; the paper: 1)")
    a("--tau-schedule", choices=TAU_SCHEDULES, help="default double: tau/2 for the first half of the modules")
    a("--epochs", type=int, help="epochs per module (sequential), per lap (multilap) or in total (e2e, parallel)")
    a("--epochs-step", type=int, help="sequential: module k trains epochs + k * step epochs")
    a("--laps", type=int, help="multilap: number of laps over the modules")
    a("--batch-size", type=int)
    a("--lr", type=float, help="SGD learning rate (peak of the schedule)")
    a("--lr-schedule", choices=LR_SCHEDULES, help="cosine to 0 over each module's steps (default), or constant")
    a("--weight-decay", type=float)
    a("--label-smoothing", type=float)
    a("--init", choices=("default", "orthogonal"), help="weight init (orthogonal: the paper's, gain --init-gain)")
    a("--device-profile", metavar="NAME|auto", help="plan for a board (`edgetrgl devices`): on shared memory the "
                                                    "budget is the whole process; without --budget, the board's memory less its OS reserve")
    a("--budget", help="memory budget, e.g. 2GB (10^9 bytes), 1.5GiB (2^30), 512MB, 800MiB")
    a("--cache", choices=CACHE_MODES, help="where finished modules' outputs go (default auto)")
    a("--cache-dtype", choices=CACHE_DTYPES, help="storage dtype of the cache (default fp32; auto: fp16 when fp32 would not stay in host memory)")
    a("--cache-views", type=int, help="augmented views cached per training sample (default 1)")
    a("--cache-dir", help="folder for the disk cache (default OUT/cache)")
    a("--keep-cache", action="store_true", default=None, help="keep the disk cache after the run")
    a("--offload", choices=OFFLOAD_MODES, help="where frozen modules go: host memory (default) or disk")
    a("--device", choices=DEVICES, help="default auto: cuda if available")
    a("--precision", choices=PRECISION_CHOICES,
      help="autocast of the module step (default fp32; fp16 adds a gradient scaler; auto: the planner weighs fp32 and bf16)")
    a("--checkpoint-blocks", nargs="?", const="on", type=_on_off_auto, metavar="on|off|auto",
      help="recompute each block's activations in the module's backward: less memory, more time (default auto: "
           "the planner uses it under a budget when that is the fastest plan that fits)")
    a("--data-parallel", action="store_true", default=None,
      help="under torchrun: every rank trains every module on its shard of the data (gradients averaged)")
    a("--sync-bn", action="store_true", default=None, help="with --data-parallel on GPUs: SyncBatchNorm")
    a("--dist-timeout", type=float, metavar="SECONDS", help="wait this long for the other ranks (default 60)")
    a("--pipeline-split", choices=PIPELINE_SPLITS, help="pipeline: modules per rank by estimated memory (default) or equal")
    a("--seed", type=int)
    a("--init-from", metavar="FILE|RUN_DIR", help="fine-tune: start from a finished run or a torchvision resnet18/50 state dict")
    a("--freeze-modules", type=int, metavar="N", help="fine-tune: keep the first N modules' weights, train the rest")
    a("--out", metavar="DIR", help="run folder (default runs/latest)")
    a("--overwrite", action="store_true", help="replace a run already in --out")
    a("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    a("--auto-resume", action="store_true", help="start --out if new, resume it if unfinished, report it if finished")
    a("--quiet", action="store_true", help="no console output")
    a("--plot", metavar="FILE.png", help="write the per-module test accuracy curve (needs matplotlib)")
    p.set_defaults(handler=run)


def _modules(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'auto', got {text!r}") from None


_NOT_CONFIG = {"config", "overwrite", "quiet", "handler", "command", "resume", "auto_resume", "plot"}


def config_from_args(args: argparse.Namespace):
    """Defaults, then the TOML file, then the flags given on the command line."""
    from edgetrgl.config import TrainConfig, load_toml
    from edgetrgl.errors import UserError

    values = load_toml(args.config) if args.config else {}
    for key, value in vars(args).items():
        if key not in _NOT_CONFIG and value is not None:
            values[key] = value
    if isinstance(values.get("boundaries"), str):
        try:
            values["boundaries"] = [int(b) for b in values["boundaries"].split(",") if b.strip()]
        except ValueError:
            raise UserError(f"--boundaries must be comma-separated block indices, got {args.boundaries!r}") from None
    return TrainConfig.from_dict(values)  # the budget string is parsed there, once


def run(args: argparse.Namespace) -> int:
    from edgetrgl.errors import UserError
    from edgetrgl.training import resume, train

    if args.auto_resume:
        if args.resume or args.overwrite:
            raise UserError("--auto-resume decides itself whether to start or resume --out: drop --resume/--overwrite")
        from edgetrgl.training.auto_resume import train_or_resume

        cfg = config_from_args(args)
        given = {k for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
        result = train_or_resume(cfg, changes={k: getattr(cfg, k) for k in given}, quiet=args.quiet)
    elif args.resume:
        if args.overwrite:
            raise UserError("--resume and --overwrite contradict each other")
        cfg = config_from_args(args)  # validates the flags given with --resume
        given = {k for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
        result = resume(args.resume, changes={k: getattr(cfg, k) for k in given}, quiet=args.quiet)
    else:
        result = train(config_from_args(args), overwrite=args.overwrite, quiet=args.quiet)
    if args.plot:
        from edgetrgl.plots import plot_run

        plot_run(result.summary(), args.plot)
    return 0


def _on_off_auto(text: str) -> bool | str:
    """``--checkpoint-blocks on|off|auto`` (alone: on)."""
    value = {"on": True, "true": True, "off": False, "false": False, "auto": "auto"}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected on, off or auto, got {text!r}")
    return value
