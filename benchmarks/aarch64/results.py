"""Records and report for the emulated aarch64 benchmark (host side, standard library only).

``results.py add KIND --torch V --cpu C --rc N --wall S --log FILE [--summary FILE]`` appends one
record to ``$WORK/records.jsonl``, reading what it needs from the step's log (the step markers of
smoke.py, the JSON of probe_cpu.py, pip's output) and from the run's summary.json for training.
``results.py write`` keeps the latest record per (kind, torch, cpu) and writes RESULTS.md and
results.json beside this file. run.sh calls both; nothing here needs torch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("WORK", "/var/tmp/edgetrgl-aarch64-work"))
RECORDS = WORK / "records.jsonl"
SIGILL_MARKERS = ("Illegal instruction", "uncaught target signal 4")


def _tail(text: str, lines: int = 12) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def _outcome(rc: int, text: str) -> str:
    """ok / sigill / timeout / error, from the exit status and the output."""
    if rc == 0:
        return "ok"
    if rc == 132 or rc == -4 or any(marker in text for marker in SIGILL_MARKERS):
        return "sigill"
    if rc in (124, 137):
        return "timeout"
    return "error"


def _smoke_steps(text: str) -> dict:
    """The steps smoke.py started, finished and failed; the one that was running when it died."""
    started, done, failed, summary = [], {}, {}, None
    for line in text.splitlines():
        if line.startswith("STEP "):
            started.append(line.split()[1])
        elif line.startswith("OK "):
            _, name, seconds = line.split()[:3]
            done[name] = float(seconds)
        elif line.startswith("FAIL "):
            name = line.split()[1]
            failed[name] = line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
        elif line.startswith("SUMMARY "):
            summary = json.loads(line[len("SUMMARY "):])
    died_in = next((name for name in started if name not in done and name not in failed), None)
    return {"steps_ok": done, "steps_failed": failed, "died_in_step": died_in, "summary": summary}


def _install_details(text: str) -> dict:
    match = re.findall(r"Successfully installed (.*)", text)
    packages = match[-1].split() if match else []
    return {"installed": packages, "nvidia_packages": _cuda_packages(packages)}


def _cuda_packages(packages: list[str]) -> list[str]:
    """The CUDA runtime pieces among installed 'name-version' strings (nvidia-ml-py is edgetrgl's NVML query)."""
    return [p for p in packages if p.lower().startswith(("nvidia", "triton", "cuda"))
            and not p.lower().startswith("nvidia-ml-py")]


def add(args: argparse.Namespace) -> None:
    text = Path(args.log).read_text(errors="replace") if args.log and Path(args.log).exists() else ""
    record = {"kind": args.kind, "torch": args.torch, "cpu": args.cpu, "rc": args.rc,
              "wall_s": round(args.wall, 1), "outcome": _outcome(args.rc, text),
              "command": args.command, "log": args.log, "tail": _tail(text),
              "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if args.kind == "probe":
        line = next((l for l in reversed(text.splitlines()) if l.startswith("{")), None)
        record["probe"] = json.loads(line) if line else None
    elif args.kind == "smoke":
        record.update(_smoke_steps(text))
    elif args.kind == "install":
        record.update(_install_details(text))
        record["reused"] = args.reused
        if args.extra:
            record.update(json.loads(Path(args.extra).read_text()))
    elif args.kind == "train" and args.summary and Path(args.summary).exists():
        summary = json.loads(Path(args.summary).read_text())
        record["train"] = {key: summary.get(key) for key in
                           ("best_module", "last_module", "wall_time_s", "peak_rss_bytes", "versions")}
        record["train"]["num_train"] = summary["dataset"]["num_train"]
        record["train"]["num_test"] = summary["dataset"]["num_test"]
    if args.extra and args.kind not in ("install",) and Path(args.extra).exists():
        record.update(json.loads(Path(args.extra).read_text()))
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    with RECORDS.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def _latest() -> dict:
    """The last record per (kind, torch, cpu); a reused venv's record keeps its first install's details."""
    latest, installed = {}, {}
    for line in RECORDS.read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "install" and record["outcome"] == "ok" and not record.get("reused"):
            installed[record["torch"]] = record
        if record["kind"] == "install" and record.get("reused") and record["torch"] in installed:
            first = installed[record["torch"]]
            record = {**record, "installed": first.get("installed", []),
                      "nvidia_packages": first.get("nvidia_packages", []),
                      "command": first.get("command")}  # the command that did install it
        latest[(record["kind"], record["torch"], record["cpu"])] = record
    return latest


def _vkey(version: str) -> tuple:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _cell(record: dict | None) -> str:
    if record is None:
        return "not run"
    if record["outcome"] == "sigill":
        return f"**SIGILL** (exit {record['rc']})"
    if record["outcome"] == "timeout":
        return f"timed out ({record['wall_s']:.0f} s)"
    if record["outcome"] == "error":
        return f"error (exit {record['rc']})"
    return f"ok ({record['wall_s']:.0f} s)"


def _where(record: dict) -> str:
    """Where a SIGILL hit, when where_sigill.py located it."""
    where = record.get("where_sigill") or {}
    if not where.get("library"):
        return ""
    short = "an LSE atomic, ARMv8.1" if "LSE" in where["instruction"] else where["instruction"]
    return (f" at `{Path(where['library']).name}` `{_demangle(where.get('symbol')) or where['file_offset']}` "
            f"(`{where['instruction_word']}`, {short})")


def _demangle(symbol: str | None) -> str | None:
    """C++ symbol names as people read them (binutils' c++filt), when it is installed."""
    if not symbol:
        return symbol
    name, _, offset = symbol.partition("+")
    try:
        name = subprocess.run(["c++filt", name], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{name}+{offset}" if offset else name


def _install_cell(record: dict | None) -> str:
    """Outcome, time, venv size and whether CUDA libraries came with the wheel."""
    if record is None:
        return "not run"
    if record["outcome"] != "ok":
        missing = next((line for line in record["tail"] if "No matching distribution" in line), "")
        return _cell(record) + (f": {missing.replace('ERROR: ', '')}" if missing else "")
    seconds = record.get("first_install_wall_s", record["wall_s"])
    cell = f"ok ({seconds:.0f} s{', venv reused' if record.get('reused') else ''}), venv {record.get('venv_mib', '?')} MiB"
    installed = record.get("installed") or []
    nvidia = _cuda_packages(installed)
    if nvidia:
        cell += f"; pulled {len(nvidia)} CUDA packages ({', '.join(sorted(nvidia)[:3])}, ...)"
    elif installed:
        cell += "; no CUDA packages"
    return cell


def _smoke_cell(record: dict | None) -> str:
    if record is None:
        return "not run"
    if record["outcome"] == "ok":
        return f"all steps ok ({record['wall_s']:.0f} s)"
    where = record.get("died_in_step") or ", ".join(record.get("steps_failed", {})) or "?"
    return f"{_cell(record)} in `{where}`{_where(record)}"


def _train_cell(record: dict | None) -> str:
    if record is None:
        return "not run (smoke test only)"
    if record["outcome"] != "ok" or not record.get("train"):
        return _cell(record) + _where(record)
    train = record["train"]
    return (f"ok: best {train['best_module']['test_accuracy'] * 100:.1f}% (module "
            f"{train['best_module']['module']}), train loop {train['wall_time_s']:.0f} s, "
            f"process {record['wall_s']:.0f} s, peak RSS {train['peak_rss_bytes'] / 2**20:.0f} MiB")


def write(_args: argparse.Namespace) -> None:
    latest = _latest()
    host = latest.get(("host", "", ""), {})
    versions = sorted({key[1] for key in latest if key[0] == "install"}, key=_vkey, reverse=True)
    cpus = sorted({key[2] for key in latest if key[0] in ("smoke", "train") and key[2]})
    probes = {key[2]: rec for key, rec in latest.items() if key[0] == "probe"}
    pip_index = latest.get(("pip_index", "", ""), {})

    lines = ["# torch on the Raspberry Pi's CPUs, emulated (qemu-user)", "",
             "Generated by `benchmarks/aarch64/results.py write` from the records of "
             "`benchmarks/aarch64/run.sh`; every cell is a measurement. "
             "**Emulated, not a board**: qemu-user runs the aarch64 code with the instruction set "
             "of the named CPU model; speed says nothing about a real Pi.", "",
             "## Machine and software", ""]
    for key in ("date", "host", "host_cpu", "qemu", "rootfs", "rootfs_python", "pip", "edgetrgl_commit",
                "command"):
        if key in host:
            lines.append(f"- {key.replace('_', ' ')}: `{host[key]}`")
    if pip_index:
        lines.append(f"- torch versions pip offers inside the rootfs (`pip index versions torch`): "
                     f"{pip_index.get('available', '?')}")
    lines += ["", "## What the emulated CPU models offer", "",
              "HWCAP bits as the emulated program sees them (`getauxval`), and one LSE atomic "
              "(`ldaddal`, ARMv8.1) executed in a child process (`probe_cpu.py`).", "",
              "| QEMU_CPU | HWCAP features | LSE in HWCAP | `ldaddal` |", "|---|---|---|---|"]
    for cpu, rec in sorted(probes.items()):
        probe = rec.get("probe") or {}
        lse = probe.get("ldaddal_returncode")
        lse_cell = "runs" if lse == 0 else ("SIGILL" if lse == -4 else f"exit {lse}")
        lines.append(f"| {cpu} | {' '.join(probe.get('features', []))} | "
                     f"{'yes' if probe.get('lse_atomics_in_hwcap') else 'no'} | {lse_cell} |")

    lines += ["", "## torch version x CPU model", "",
              "Install: `pip install [--no-compile] torch==V torchvision==0.(V.minor+15).* -e edgetrgl` in a "
              "fresh venv, run under cortex-a72 (the exact command of each is listed below). Smoke: `smoke.py` (import, 256x256 matmul, conv+BN backward, "
              "`torch.jit.script`, torchvision import). Train: `edgetrgl train --config "
              "benchmarks/aarch64/small.toml` (ResNet-20 width 4, 200 MNIST training images, 1000 "
              "test, K=2, 1 epoch). All runs use one torch thread (`OMP_NUM_THREADS=1`). Times are "
              "emulated wall times on a shared host, under `nice -n 10`: not a speed figure for any board.", "",
              "| torch | install | CPU | smoke | train |", "|---|---|---|---|---|"]
    for version in versions:
        install = latest.get(("install", version, ""))
        install_cell = _install_cell(install)
        for i, cpu in enumerate(cpus):
            lines.append(f"| {version if i == 0 else ''} | {install_cell if i == 0 else ''} | {cpu} | "
                         f"{_smoke_cell(latest.get(('smoke', version, cpu)))} | "
                         f"{_train_cell(latest.get(('train', version, cpu)))} |")

    failures = [rec for key, rec in sorted(latest.items())
                if key[0] in ("smoke", "train", "install") and rec["outcome"] != "ok"]
    lines += ["", "## Failures, last lines of output", ""]
    if not failures:
        lines.append("None.")
    for rec in failures:
        lines += [f"**torch {rec['torch']}, {rec['kind']}{', ' + rec['cpu'] if rec['cpu'] else ''}** "
                  f"(exit {rec['rc']}, `{rec['command']}`):", "", "```", *rec["tail"][-8:], "```", ""]
    lines += ["", "## Exact commands", "", "```"]
    seen = set()
    for key, rec in sorted(latest.items()):
        if rec.get("command") and rec["command"] not in seen and key[0] != "host":
            seen.add(rec["command"])
            lines.append(rec["command"])
    lines += ["```", ""]

    (HERE / "RESULTS.md").write_text("\n".join(lines))
    (HERE / "results.json").write_text(json.dumps(
        {"host": host, "pip_index": pip_index, "probes": probes,
         "records": [rec for key, rec in sorted(latest.items()) if key[0] not in ("host", "probe", "pip_index")]},
        indent=1) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_add = sub.add_parser("add")
    p_add.add_argument("kind", choices=("host", "probe", "pip_index", "install", "smoke", "train"))
    p_add.add_argument("--torch", default="")
    p_add.add_argument("--cpu", default="")
    p_add.add_argument("--rc", type=int, default=0)
    p_add.add_argument("--wall", type=float, default=0.0)
    p_add.add_argument("--log", default="")
    p_add.add_argument("--summary", default="")
    p_add.add_argument("--extra", default="", help="a JSON file whose keys are merged into the record")
    p_add.add_argument("--command", default="")
    p_add.add_argument("--reused", action="store_true")
    p_add.set_defaults(func=add)
    sub.add_parser("write").set_defaults(func=write)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
