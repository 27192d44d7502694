"""Tables, a summary and figures of an accuracy study, from its ``runs.jsonl`` (a partial grid too).

Means over seeds with a 95% interval (Student's t, n - 1 degrees of freedom), in percent; differences
between methods are paired by seed (same training subset, same init). ``--record`` reads the study's
recorded rows and rewrites ``results/tables.md``, ``results/summary.json``, its figures and every
``<!-- generated:NAME -->`` ... ``<!-- /generated:NAME -->`` block of its README (and of each
``--readme`` file) with table NAME; ``--results DIR`` reads and writes DIR (the README only with
``--readme``); with neither it prints the tables.

    python benchmarks/accuracy/report.py fashionmnist --record --readme README.md
    python benchmarks/accuracy/report.py fashionmnist --results benchmarks/accuracy/fashionmnist/results/paper_scale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from _study import load, read_rows, studies, usage

from _common import add_output_args, output_folder  # noqa: E402


def write_generated(path: Path, made: dict[str, str]) -> list[str]:
    """Replace each generated block of ``path`` with its table; the names it had. A block naming a
    table the study lacks is an error, not silence."""
    text = path.read_text()
    names = re.findall(r"<!-- generated:([\w:-]+) -->", text)
    if unknown := [n for n in names if n not in made]:
        usage(f"{path}: no table named {unknown[0]!r}; the study has {', '.join(made)}")
    for name in names:
        begin, end = f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"
        if end not in text.split(begin, 1)[1]:
            usage(f"{path}: {begin} has no {end}")
        head, rest = text.split(begin, 1)
        text = head + begin + "\n" + made[name].rstrip("\n") + "\n" + end + rest.split(end, 1)[1]
    path.write_text(text)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help=f"one of {', '.join(studies())}")
    parser.add_argument("--readme", type=Path, action="append", default=[],
                        help="also rewrite this file's generated blocks (repeatable)")
    add_output_args(parser)
    args = parser.parse_args(argv)
    study = load(args.study)
    results = output_folder(args, study.RESULTS)
    source = results or study.RESULTS
    rows, sessions = read_rows(source / "runs.jsonl"), read_rows(source / "sessions.jsonl")
    getattr(study, "prepare", lambda rows: None)(rows)
    made = study.tables(rows, source)
    text = study.tables_md(rows, made, sessions)
    if results is None:
        print(text)
        return 0
    (results / "tables.md").write_text(text)
    (results / "summary.json").write_text(json.dumps(study.summary(rows), indent=1) + "\n")
    written = [results / "tables.md", results / "summary.json"]
    written += study.figures(rows, study.FIGURES if results == study.RESULTS else results)
    for readme in ([study.README] if args.record else []) + args.readme:
        written.append(f"{readme}: {', '.join(write_generated(readme, made)) or 'no generated blocks'}")
    print(f"{len(rows)} runs ->", *written, sep="\n  ", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
