"""Startup footprint: RSS and wall time of ``import edgetrgl`` against ``import torch`` (issue 9, item 7).

Each import runs in a fresh interpreter (``python -c``), ``--repeats`` times (default 5); the median is
reported. RSS is read with psutil in the child right after the import (psutil is imported first in
both cases, so its own cost cancels out). The child also reports which heavy optional modules the
import pulled in (torchvision, matplotlib, pynvml, rich, PIL).

    python benchmarks/startup.py                   # writes results/startup.json and .md
    python benchmarks/startup.py --baseline-root ../main   # also `import edgetrgl` from another checkout

Timings on a shared machine mislead: the result records how many cores other processes kept busy,
and ``--baseline-root`` measures another checkout (e.g. before a change) in the same run, interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Contention, mib, table, add_output_args, output_folder, write_results  # noqa: E402

HEAVY = ("torchvision", "matplotlib", "pynvml", "rich", "PIL")
_CHILD = """
import json, sys, time, psutil
t0 = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t0
print(json.dumps({{"rss_bytes": psutil.Process().memory_info().rss, "import_s": elapsed,
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def measure(module: str, repeats: int, root: Path, label: str) -> dict:
    """Median RSS and import time of ``import module`` (from checkout ``root``) over ``repeats`` fresh interpreters."""
    runs = []
    env = dict(os.environ, PYTHONPATH=str(root))
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _CHILD.format(module=module, heavy=HEAVY)], capture_output=True,
                             text=True, timeout=300, env=env, check=True, cwd=root)  # `-c` puts the cwd first on sys.path
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"module": module, "label": label, "root": str(root), "repeats": repeats,
            "rss_bytes": int(statistics.median(r["rss_bytes"] for r in runs)),
            "import_s": round(statistics.median(r["import_s"] for r in runs), 3),
            "heavy_loaded": runs[-1]["heavy"], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="startup", help="result file name under benchmarks/results/")
    parser.add_argument("--baseline-root", type=Path, help="another checkout whose `import edgetrgl` to measure too")
    add_output_args(parser)
    args = parser.parse_args()

    here = Path(__file__).resolve().parent.parent
    cases = [("torch", here, "`import torch`"), ("edgetrgl", here, "`import edgetrgl`"),
             ("edgetrgl.cli.main", here, "`import edgetrgl.cli.main`")]
    if args.baseline_root:
        cases.append(("edgetrgl", args.baseline_root.resolve(), f"`import edgetrgl` from {args.baseline_root}"))
    gauge = Contention()
    results = [measure(m, args.repeats, root, label) for m, root, label in cases]
    busy = gauge.busy_cores()
    torch_rss = results[0]["rss_bytes"]
    rows = [[r["label"], mib(r["rss_bytes"]), mib(r["rss_bytes"] - torch_rss), f"{r['import_s']:.2f} s",
             ", ".join(r["heavy_loaded"]) or "none"] for r in results]
    markdown = (f"Median of {args.repeats} fresh interpreters; RSS read with psutil right after the import. "
                f"Other processes kept {busy} cores busy on average during the run (timings are noisy).\n\n"
                + table(["import", "RSS", "over `import torch`", "import time", "heavy modules loaded"], rows))
    written = write_results(args.name, {"results": results, "other_busy_cores": busy}, markdown, output_folder(args))
    if written:
        print(markdown)
        print(f"wrote {written[0]} and {written[1]}")


if __name__ == "__main__":
    main()
