"""What the transport term costs in memory: a TRGL module's peak against the same VanGL module's.

For each zoo model family (CIFAR ResNet, K-M ResNet, VGG (displacement), ViT (two residues per
block), torchvision ResNet-18), split into K modules, every module trains one step alone (as the
sequential regime does) after one warm-up step, and its peak is read two ways: the tensor-level
live-storage counter (``track_live_peak``, what ``--budget`` enforces) and MemTracker (what
``edgetrgl bench`` reports). Variants: VanGL; TRGL with the plain ("autograd") transport term;
TRGL with the fused one (the default); both with ``--checkpoint-blocks``. Writes
results/transport_memory.{json,md}.

    .venv/bin/python benchmarks/transport_memory.py [--batch 64] [--image-size 32] [--modules 4]
    .venv/bin/python benchmarks/transport_memory.py --families "vgg (displacement)" --update
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_output_args, command, machine, output_folder  # noqa: E402

from edgetrgl.memory.tensor import track_live_peak, track_peak  # noqa: E402
from edgetrgl.models import create_model  # noqa: E402
from edgetrgl.modular import build_modular  # noqa: E402
from edgetrgl.step import local_step  # noqa: E402

FAMILIES = {  # family -> (model, options)
    "cifar resnet": ("resnet20", {}),
    "kmresnet": ("kmresnet4", {"width": 128}),
    "vgg (displacement)": ("vgg19_bn", {}),  # vgg11 has no block that keeps its shape at 32x32
    "vit (two residues)": ("vit_tiny", {}),
    "torchvision resnet18": ("resnet18", {}),
}
VARIANTS = {  # name -> (transport weight, local_step options)
    "vangl": (0.0, {}),
    "trgl_autograd": (0.05, {"transport_impl": "autograd"}),
    "trgl_fused": (0.05, {"transport_impl": "fused"}),
    "vangl_ckpt": (0.0, {"checkpoint_blocks": True}),
    "trgl_fused_ckpt": (0.05, {"transport_impl": "fused", "checkpoint_blocks": True}),
}


def module_peaks(model: str, options: dict, batch: int, size: int, modules: int, weight: float, step_options: dict) -> list[dict]:
    """Peak bytes (live counter and MemTracker) of one step of each module, trained alone."""
    torch.manual_seed(0)
    net = build_modular(create_model(model, in_channels=3, num_classes=10, image_size=size, **options),
                        modules, 10, torch.zeros(2, 3, size, size)).train()
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 10, (batch,))
    peaks = []
    for stage, head in zip(net.stages, net.heads):
        optimizer = torch.optim.SGD(list(stage.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9)

        def step() -> None:
            local_step(stage, head, optimizer, x, y, (1.0, weight), 0.0, **step_options)

        step()  # warm-up: gradients and momentum buffers exist in the steady state
        live = track_live_peak(step, stage, head, optimizer, x, y)
        tracked = track_peak(step, stage, head, optimizer, x, y).peak_bytes
        peaks.append({"live_bytes": live, "memtracker_bytes": tracked})
        with torch.no_grad():
            x = stage.eval()(x)
            stage.train()
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--modules", type=int, default=4)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--update", action="store_true", help="replace only these families' rows in an earlier result")
    add_output_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for family in args.families:
        model, options = FAMILIES[family]
        per_variant = {name: module_peaks(model, options, args.batch, args.image_size, args.modules, w, o)
                       for name, (w, o) in VARIANTS.items()}
        row = {"family": family, "model": model, "options": options, "modules": per_variant, "command": command()}
        for key in ("live_bytes", "memtracker_bytes"):
            base = [m[key] for m in per_variant["vangl"]]
            for name in VARIANTS:
                peaks = [m[key] for m in per_variant[name]]
                row[f"{name}_{key}_worst"] = max(peaks)
                row[f"{name}_{key}_max_ratio"] = max(p / b for p, b in zip(peaks, base))  # module by module
        rows.append(row)
        print(family, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k.endswith("ratio")}, flush=True)
    out = output_folder(args)
    if out is not None and args.update and (out / "transport_memory.json").exists():
        earlier = json.loads((out / "transport_memory.json").read_text())["rows"]
        mine = {r["family"]: r for r in rows}
        rows = [mine.pop(r["family"], r) for r in earlier] + list(mine.values())
    meta = {"command": command(), "machine": machine(), "batch": args.batch, "image_size": args.image_size,
            "modules": args.modules}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "transport_memory.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
        (out / "transport_memory.md").write_text(_markdown(meta, rows))
    print(_markdown(meta, rows))


def _markdown(meta: dict, rows: list[dict]) -> str:
    m = meta["machine"]
    lines = [
        "# transport_memory\n",
        f"Command: `{meta['command']}`  ",
        f"Machine: {m.get('platform', '')}, torch {m.get('torch', '')}, {m.get('date', '')}\n",
        f"Batch {meta['batch']}, 3x{meta['image_size']}x{meta['image_size']}, K={meta['modules']}, SGD momentum; "
        "each module alone, one step after a warm-up. Ratio: the largest over modules of (variant's peak / "
        "the same module's VanGL peak); worst: the largest module peak. Live = tensor-level live-storage "
        "counter (what --budget enforces); MT = MemTracker (what `edgetrgl bench` reports). A row re-run "
        "with --update carries its own command in the JSON.\n",
        "| family | TRGL autograd / VanGL (live, MT) | TRGL fused / VanGL (live, MT) | VanGL worst (live) | "
        "TRGL autograd worst | TRGL fused worst | VanGL + ckpt worst | TRGL fused + ckpt worst (/ VanGL) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    mib = 2.0**20
    for r in rows:
        lines.append(
            f"| {r['family']} ({r['model']}) "
            f"| {r['trgl_autograd_live_bytes_max_ratio']:.3f}x, {r['trgl_autograd_memtracker_bytes_max_ratio']:.3f}x "
            f"| {r['trgl_fused_live_bytes_max_ratio']:.3f}x, {r['trgl_fused_memtracker_bytes_max_ratio']:.3f}x "
            f"| {r['vangl_live_bytes_worst'] / mib:.1f} MiB | {r['trgl_autograd_live_bytes_worst'] / mib:.1f} MiB "
            f"| {r['trgl_fused_live_bytes_worst'] / mib:.1f} MiB | {r['vangl_ckpt_live_bytes_worst'] / mib:.1f} MiB "
            f"| {r['trgl_fused_ckpt_live_bytes_worst'] / mib:.1f} MiB ({r['trgl_fused_ckpt_live_bytes_max_ratio']:.2f}x) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
