"""``edgetrgl devices``: list the device profiles, show one with its sources, or detect this board."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  edgetrgl devices                     # every profile: memory, storage, CPU, dtypes
  edgetrgl devices show rpi4-2gb       # one profile, every figure with its source
  edgetrgl devices detect              # which profile fits this machine, and its live memory
  edgetrgl devices detect --json       # the same as JSON

Sizes are binary (MiB, GiB); storage speeds are MB/s (10^6 bytes per second), typical values.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("devices", help="list device profiles (Jetson, Raspberry Pi, generic) or detect this board",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=("list", "show", "detect"), default="list",
                   help="list (default), show NAME, or detect")
    p.add_argument("name", nargs="?", help="profile name for `show`")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--root", default="/", help="detect: read proc/ and etc/ under this folder (default /)")
    p.add_argument("--tegrastats-timeout", type=float, default=3.0, help="detect: seconds to wait for tegrastats")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgetrgl.errors import UserError

    if args.action == "show" and not args.name:
        raise UserError("`edgetrgl devices show` needs a profile name; see `edgetrgl devices`")
    if args.action != "show" and args.name:
        raise UserError(f"unexpected argument {args.name!r}; did you mean `edgetrgl devices show {args.name}`?")
    return {"list": _list, "show": _show, "detect": _detect}[args.action](args)


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrgl.devices import get_profile, list_profiles

    profiles = [get_profile(name) for name in list_profiles()]
    if args.json:
        return _print_json([_profile_dict(p) for p in profiles])
    table = Table(title="device profiles")
    table.add_column("name", no_wrap=True)
    for column in ("memory", "shared", "OS reserve", "accel.", "storage MB/s read/write", "CPU", "dtypes"):
        table.add_column(column)
    for p in profiles:
        table.add_row(p.name, _size(p.total_bytes), "yes" if p.shared_memory else "no", _size(p.os_reserve_bytes),
                      p.accelerator, f"{p.storage_kind} {p.storage_read_mb_s:g}/{p.storage_write_mb_s:g}",
                      f"{p.cpu_cores}x {p.cpu_model}" if p.cpu_cores else "machine's", ",".join(p.preferred_dtypes))
    Console().print(table)
    print("budget: whole process where memory is shared or there is no accelerator; GPU memory on `cuda`. "
          "`edgetrgl devices show NAME` gives every figure's source.")
    return 0


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrgl.devices import get_profile

    p = get_profile(args.name)
    if args.json:
        return _print_json(_profile_dict(p))
    table = Table(title=f"{p.name}: {p.description}", show_lines=True)
    table.add_column("figure")
    table.add_column("value")
    table.add_column("source")
    rows = [("memory", f"{_size(p.total_bytes)}, {'shared by CPU and accelerator' if p.shared_memory else 'not shared'}",
             "memory"),
            ("OS reserve", _size(p.os_reserve_bytes), "os_reserve"),
            ("accelerator", p.accelerator, "accelerator"),
            ("storage", f"{p.storage_kind}: read {p.storage_read_mb_s:g} MB/s, write {p.storage_write_mb_s:g} MB/s",
             "storage"),
            ("CPU", f"{p.cpu_cores or 'this machine:'} x {p.cpu_model}, {p.default_threads or 'auto'} threads", "cpu"),
            ("dtypes", ", ".join(p.preferred_dtypes), "dtypes")]
    for label, value, key in rows:
        table.add_row(label, value, p.sources.get(key, ""))
    Console().print(table)
    return 0


def _detect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgetrgl.devices import detect, live_memory

    found = detect(args.root)
    live = live_memory(args.root, tegrastats_timeout_s=args.tegrastats_timeout)
    if args.json:
        return _print_json({"profile": found.profile.name, "board": found.board, "jetson": found.jetson,
                            "mem_total_bytes": found.mem_total_bytes, "reason": found.reason, "live": live})
    console = Console()
    console.print(f"profile: [bold]{found.profile.name}[/bold] ({found.reason})")
    table = Table(title="live memory")
    for column in ("where", "used", "available", "total", "source"):
        table.add_column(column)
    host = live["host"]
    used = None if host["total_bytes"] is None or host["available_bytes"] is None else host["total_bytes"] - host["available_bytes"]
    table.add_row("host RAM", _size(used), _size(host["available_bytes"]), _size(host["total_bytes"]),
                  f"MemAvailable, {host['source']}")
    for gpu in live["nvml"] or []:
        free = gpu["free_bytes"]
        note = "NVML" if gpu["total_bytes"] is not None else "NVML gives no memory here (integrated GPU: see host RAM)"
        table.add_row(f"GPU {gpu['index']} {gpu['name'] or ''}".strip(), _size(gpu["used_bytes"]), _size(free),
                      _size(gpu["total_bytes"]), note)
    if live["tegrastats"]:
        t = live["tegrastats"]
        table.add_row("tegrastats RAM", _size(t["ram_used_bytes"]), _size(t["ram_total_bytes"] - t["ram_used_bytes"]),
                      _size(t["ram_total_bytes"]), "tegrastats, one reading")
    console.print(table)
    return 0


def _profile_dict(p) -> dict:
    from dataclasses import asdict

    return {**asdict(p), "budget_scope": p.budget_scope}


def _print_json(data) -> int:
    import json

    print(json.dumps(data, indent=2))
    return 0


def _size(n: int | None) -> str:
    from edgetrgl.config import format_bytes

    return "machine's" if n is None else format_bytes(n)
