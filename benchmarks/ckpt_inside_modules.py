"""Issue 11's third target: ResNet-110, 3x96x96, batch 64, sequential TRGL with checkpointing inside
modules against e2e: estimated at K = 4 and 8 (fake tensors), and measured on the CPU at one K
(MemTracker on a real step of every module, as `edgetrgl bench` measures), against the estimate.

    python benchmarks/ckpt_inside_modules.py --measure-k 8     # about 10 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import table, add_output_args, output_folder, write_results  # noqa: E402

from edgetrgl.bench.estimate import estimate_method  # noqa: E402
from edgetrgl.bench.setting import BenchSetting, resolve_boundaries  # noqa: E402
from edgetrgl.bench.worker import measure  # noqa: E402

METHOD = "sequential-trgl+ckpt"
TARGETS = {4: 0.25, 8: 0.12}
MiB = 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure-k", type=int, default=8, choices=(4, 8))
    add_output_args(parser)
    args = parser.parse_args()
    rows, payload = [], {"method": METHOD, "estimates": {}, "measured": None}
    for k in (4, 8):
        setting = resolve_boundaries(BenchSetting(model="resnet110", image_size=96, batch_size=64, modules=k,
                                                  split="balanced", device="cpu", steps=1, warmup=1))
        e2e = estimate_method(setting, "e2e")["peak_bytes"]
        ours = estimate_method(setting, METHOD)
        ratio = ours["peak_bytes"] / e2e
        payload["estimates"][k] = {"e2e_bytes": e2e, "bytes": ours["peak_bytes"], "ratio": ratio,
                                   "boundaries": setting.boundaries}
        measured = ""
        if k == args.measure_k:
            record = measure({"setting": setting.to_dict(), "method": METHOD, "threads": 2})
            payload["measured"] = {"k": k, "bytes": record["peak_bytes"],
                                   "per_module_bytes": [m["peak_bytes"] for m in record.get("per_module", [])]}
            measured = (f"{record['peak_bytes'] / MiB:.1f} MiB "
                        f"({100 * (record['peak_bytes'] / ours['peak_bytes'] - 1):+.1f}% vs the estimate)")
        rows.append([k, f"{e2e / MiB:,.0f} MiB", f"{ours['peak_bytes'] / MiB:.1f} MiB", f"**{ratio:.3f}x**",
                     f"<= {TARGETS[k]}x: {'met' if ratio <= TARGETS[k] else 'NOT met'}", measured or "-"])
        print(rows[-1], file=sys.stderr)
    markdown = ("ResNet-110, 3x96x96, batch 64, balanced split, sequential TRGL with `--checkpoint-blocks` "
                "(MemTracker peak of the largest module) against e2e (estimated).\n\n"
                + table(["K", "e2e (estimate)", "ours (estimate)", "ours / e2e", "target", "measured on the CPU"],
                        rows))
    write_results("ckpt_inside_modules", payload, markdown, output_folder(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
