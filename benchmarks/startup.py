"""Startup footprint: RSS and wall time of ``import edgetrgl`` against ``import torch`` (issue 9, item 7).

Each import runs in a fresh interpreter (``python -c``), ``--repeats`` times (default 5); the median is
reported. RSS is read with psutil in the child right after the import (psutil is imported first in
both cases, so its own cost cancels out). The child also reports which heavy optional modules the
import pulled in (torchvision, matplotlib, pynvml, rich, PIL).

    python benchmarks/startup.py                   # writes results/startup.json and .md
    python benchmarks/startup.py --name startup_before --repeats 5
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
from _common import mib, table, write_results  # noqa: E402

HEAVY = ("torchvision", "matplotlib", "pynvml", "rich", "PIL")
_CHILD = """
import json, sys, time, psutil
t0 = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t0
print(json.dumps({{"rss_bytes": psutil.Process().memory_info().rss, "import_s": elapsed,
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def measure(module: str, repeats: int) -> dict:
    """Median RSS and import time of ``import module`` over ``repeats`` fresh interpreters."""
    runs = []
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _CHILD.format(module=module, heavy=HEAVY)], capture_output=True,
                             text=True, timeout=300, env=env, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {"module": module, "repeats": repeats,
            "rss_bytes": int(statistics.median(r["rss_bytes"] for r in runs)),
            "import_s": round(statistics.median(r["import_s"] for r in runs), 3),
            "heavy_loaded": runs[-1]["heavy"], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--name", default="startup", help="result file name under benchmarks/results/")
    args = parser.parse_args()

    results = [measure(m, args.repeats) for m in ("torch", "edgetrgl", "edgetrgl.cli.main")]
    torch_rss = results[0]["rss_bytes"]
    rows = [[f"`import {r['module']}`", mib(r["rss_bytes"]), mib(r["rss_bytes"] - torch_rss), f"{r['import_s']:.2f} s",
             ", ".join(r["heavy_loaded"]) or "none"] for r in results]
    markdown = (f"Median of {args.repeats} fresh interpreters; RSS read with psutil right after the import.\n\n"
                + table(["import", "RSS", "over `import torch`", "import time", "heavy modules loaded"], rows))
    json_path, md_path = write_results(args.name, {"results": results}, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
