"""A longer campaign of the generated bad input (tests/test_cli_bad_input.py) than CI runs.

The suite runs each property on a few derandomized examples; this runs them on ``--examples`` each
(still derandomized: the same examples for the same count, so a failure can be replayed), and
records how many examples ran, the time, and the failures hypothesis reports (each one a bug to fix
with its own regression test).

    python benchmarks/fuzz_cli.py --examples 200 [--record]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import add_output_args, output_folder, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="examples per property (default 200)")
    add_output_args(parser)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "tests/test_cli_bad_input.py", "-q", "-p", "no:cacheprovider",
                           "-k", "not found and not base", "--hypothesis-show-statistics"],
                          capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "EDGETRGL_FUZZ_EXAMPLES": str(args.examples)})
    seconds = time.perf_counter() - started
    passed = re.search(r"(\d+) passed", proc.stdout)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
    examples = [int(n) for n in re.findall(r"- (\d+) passing examples", proc.stdout)]
    result = {"examples_per_property": args.examples, "properties_passed": int(passed.group(1)) if passed else 0,
              "properties_failed": failed, "examples_run": sum(examples), "seconds": round(seconds, 1),
              "failure_output": proc.stdout[-6000:] if failed else ""}
    markdown = (f"{result['properties_passed']} properties passed, {len(failed)} failed, over "
                f"{result['examples_run']:,} generated examples ({args.examples} per property, derandomized) in "
                f"{seconds / 60:.1f} min.\n" + "".join(f"\n- FAILED {name}" for name in failed))
    write_results("fuzz_cli", result, markdown, output_folder(args))
    print(markdown)
    return 1 if failed or proc.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
