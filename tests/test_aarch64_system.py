"""The host- and guest-side pieces of benchmarks/aarch64/system/ (the emulated Pi 4), without QEMU.

The emulation itself is far too slow for the suite; these check what its script relies on: the
QEMU command line and its arguments, the memory watcher, the board-side reading of wheel
dependencies, the PNG digits, and the parsing of what a boot leaves behind into the report.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

SYSTEM = Path(__file__).resolve().parents[1] / "benchmarks" / "aarch64" / "system"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"pi4_{name}", SYSTEM / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


boot = load("boot")
memwatch = load("memwatch")
wheel_requires = load("wheel_requires")
digits = load("digits")
results = load("results")

BOOT_ARGS = ["--kernel", "vmlinuz", "--initrd", "initrd.img", "--root", "root.qcow2",
             "--share", "/s", "--record", "/b/boot.json"]


def test_qemu_argv_is_a_2gib_cortex_a72_with_readonly_torch_disks_and_a_9p_share():
    args = boot.parse_args(BOOT_ARGS + ["--disk", "torch-2.14.1.img"])
    argv = boot.qemu_argv(args, "/b/console.log", "/b/monitor.sock")
    pairs = dict(zip(argv, argv[1:]))
    assert argv[0] == "qemu-system-aarch64"
    assert (pairs["-M"], pairs["-cpu"], pairs["-smp"], pairs["-m"]) == ("virt", "cortex-a72", "4", "2048")
    assert pairs["-nic"] == "none"
    assert "file=torch-2.14.1.img,if=virtio,format=raw,readonly=on" in argv
    assert "file=root.qcow2,if=virtio,format=qcow2,cache=writeback" in argv
    assert "local,id=host,path=/s,security_model=none" in argv
    assert pairs["-monitor"] == "unix:/b/monitor.sock,server,nowait"
    assert "init=/sbin/edgetrgl-init" in pairs["-append"]


@pytest.mark.parametrize("extra", [["--kill-when", "module 1"], ["--kill-file", "x.log"], ["--timeout", "0"],
                                   ["--smp", "0"], ["--kill-delay", "-1"]])
def test_boot_arguments_that_cannot_work_are_refused(extra, capsys):
    with pytest.raises(SystemExit) as exc:
        boot.parse_args(BOOT_ARGS + extra)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_boot_outcome_tells_a_power_off_from_a_kill_a_timeout_and_a_crash():
    assert boot.outcome(0, killed=False, timed_out=False, job_rc_exists=True) == "powered_off"
    assert boot.outcome(0, killed=True, timed_out=False, job_rc_exists=False) == "killed"
    assert boot.outcome(-15, killed=False, timed_out=True, job_rc_exists=False) == "timed_out"
    assert boot.outcome(0, killed=False, timed_out=False, job_rc_exists=False) == "qemu_failed"
    assert boot.outcome(1, killed=False, timed_out=False, job_rc_exists=True) == "qemu_failed"


def test_kill_pattern_is_looked_for_in_the_file_the_guest_writes(tmp_path):
    import re
    log = tmp_path / "killed.log"
    pattern = re.compile(r"module 1/2 .*test accuracy")
    assert not boot.found_in(str(log), pattern)  # not written yet
    log.write_text("edgetrgl: sequential trgl\n")
    assert not boot.found_in(str(log), pattern)
    log.write_text("module 1/2 (lap 1): test accuracy 27.40%  [46.6 s]\n")
    assert boot.found_in(str(log), pattern)


def test_memwatch_parses_proc_fields_in_bytes():
    text = "Name:\tpython3\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nRssAnon:\t   512 kB\nThreads:\t4\n"
    assert memwatch.parse_kib_fields(text, ("VmRSS", "RssAnon", "VmHWM")) == {
        "VmHWM": 2048 * 1024, "VmRSS": 1024 * 1024, "RssAnon": 512 * 1024}


def test_memwatch_summary_takes_peaks_and_the_lowest_available_memory():
    rows = [{"t": 0, "RssAnon": 10, "VmHWM": 20, "MemAvailable": 500},
            {"t": 1, "RssAnon": 30, "VmHWM": 40, "MemAvailable": 200},
            {"t": 2, "MemAvailable": 450}]  # the child gone: only the machine's figure
    s = memwatch.summarize(rows, rc=0, maxrss_kib=50, wall_s=2.04)
    assert (s["peak_rss_anon_bytes"], s["peak_vm_hwm_bytes"], s["ru_maxrss_bytes"]) == (30, 40, 50 * 1024)
    assert (s["mem_available_start_bytes"], s["mem_available_min_bytes"], s["samples"]) == (500, 200, 3)


def test_memwatch_reports_the_childs_exit_and_kernel_peak_and_a_kill_as_128_plus_signal(tmp_path):
    out = tmp_path / "grow.json"
    code = "x = bytearray(64 * 2**20); import time; time.sleep(0.5)"
    rc = subprocess.run([sys.executable, str(SYSTEM / "memwatch.py"), "--out", str(out), "--every", "0.1",
                         "--", sys.executable, "-c", code], timeout=60).returncode
    summary = json.loads(out.read_text())
    assert rc == 0 and summary["rc"] == 0
    assert summary["ru_maxrss_bytes"] >= 64 * 2**20          # the kernel saw the 64 MiB touched
    assert summary["peak_rss_anon_bytes"] >= 60 * 2**20       # and so did the samples
    assert len((tmp_path / "grow.jsonl").read_text().splitlines()) == summary["samples"] >= 2
    killed = tmp_path / "killed.json"
    rc = subprocess.run([sys.executable, str(SYSTEM / "memwatch.py"), "--out", str(killed), "--",
                         sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                        timeout=60).returncode
    assert rc == 137 and json.loads(killed.read_text())["rc"] == 137


def test_memwatch_without_a_command_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SYSTEM / "memwatch.py"), "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no command given" in proc.stderr


TORCH_26_REQUIRES = [
    "filelock", "typing-extensions>=4.10.0",
    'nvidia-cudnn-cu12==9.1.0.70; platform_system == "Linux" and platform_machine == "x86_64"',
    'sympy==1.13.1; python_version >= "3.9"',
    'triton==3.2.0; platform_system == "Linux" and platform_machine == "x86_64"',
    'cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"',
    'optree>=0.13.0; extra == "optree"', "torch==2.6.0",
]


def test_wheel_requires_reads_markers_as_the_board_does_not_as_the_x86_host():
    kept = wheel_requires.board_requirements(TORCH_26_REQUIRES, skip={"torch"})
    assert kept == ["filelock", "typing-extensions>=4.10.0", "sympy==1.13.1",
                    "cuda-toolkit[cublas,cudart]==13.0.3"]


def test_wheel_requires_stops_at_the_end_of_the_metadata_headers(tmp_path):
    metadata = ("Metadata-Version: 2.1\nName: torch\nRequires-Dist: filelock\n"
                'Requires-Dist: triton==3.2.0; platform_machine == "x86_64"\n\n'
                "Requires-Dist: not-a-header (the description)\n")
    wheel = tmp_path / "torch-2.6.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    import zipfile
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("torch-2.6.0.dist-info/METADATA", metadata)
    assert wheel_requires.metadata_requires(wheel_requires.wheel_metadata(str(wheel))) == [
        "filelock", 'triton==3.2.0; platform_machine == "x86_64"']


def _decode_png_gray(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, color) == (8, 0)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (width + 1):(y + 1) * (width + 1)] for y in range(height)]
    assert all(r[0] == 0 for r in rows)  # filter type none
    return width, height, b"".join(r[1:] for r in rows)


def test_digits_writes_the_npz_images_as_pngs_named_by_label(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 5, 7), dtype=np.uint8)
    labels = np.arange(10, dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    assert digits.main([str(tmp_path / "d.npz"), str(tmp_path / "png"), "3"]) == 0
    files = sorted((tmp_path / "png").iterdir())
    assert [f.name for f in files] == ["digit-0-label0.png", "digit-3-label3.png", "digit-6-label6.png"]
    width, height, pixels = _decode_png_gray(files[1].read_bytes())
    assert (width, height) == (7, 5) and pixels == images[3].tobytes()
    assert digits.main(["only-one-arg"]) == 2


DMESG = """[  812.331245] python3 invoked oom-killer: gfp_mask=0x140dca(GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO), order=0, oom_score_adj=0
[  812.402113] Out of memory: Killed process 412 (python3) total-vm:3516444kB, anon-rss:1843200kB, file-rss:65536kB, shmem-rss:0kB, UID:0 pgtables:4120kB oom_score_adj:0
[  900.100000] python3[530]: unhandled exception: Illegal instruction (0xb8e20062) at 0x0000ffff8c2a1f2c
"""


def test_results_reads_the_oom_killers_victim_and_unhandled_signals_from_dmesg():
    assert results.oom_kills(DMESG) == [{"pid": 412, "name": "python3", "anon_rss_bytes": 1843200 * 1024}]
    assert results.unhandled_signals(DMESG) == [
        "python3[530]: unhandled exception: Illegal instruction (0xb8e20062) at 0x0000ffff8c2a1f2c"]
    assert results.oom_kills("[ 1.0] nothing here\n") == []


BOARD = """## uname
Linux edgetrgl-pi4 6.1.0-50-arm64 #1 SMP Debian 6.1.158-1 aarch64 GNU/Linux
## /proc/device-tree/model
linux,dummy-virt
## midr_el1 (cpu0)
0x00000000410fd083
## nproc
4
## /proc/cpuinfo (cpu0)
processor\t: 0
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid
CPU part\t: 0xd08

## /proc/meminfo
MemTotal:        2010000 kB
## python
Python 3.11.2
"""


def _fake_boot(tmp_path: Path, *, killed_mid_step: bool = False) -> Path:
    out = tmp_path / "boot" / "share" / "out"
    (out / "run").mkdir(parents=True)
    (tmp_path / "boot" / "boot.json").write_text(json.dumps({"outcome": "powered_off", "wall_s": 1234.5, "argv": ["qemu"]}))
    (out / "board.txt").write_text(BOARD)
    (out / "job.rc").write_text("0\n")
    (out / "boot.uptime").write_text("41.20 150.00\n")
    (out / "dmesg.txt").write_text(DMESG)
    (out / "installed.txt").write_text("torch==2.14.1\ntorchvision==0.29.1\n")
    steps = [{"step": "smoke", "rc": 0, "wall_s": 100.0, "limit_s": 1800, "command": "python3 smoke.py"},
             {"step": "train", "rc": 0, "wall_s": 900.0, "limit_s": 5400, "command": "python3 -m edgetrgl train"},
             {"step": "predict", "rc": 0, "wall_s": 60.0, "limit_s": 900, "command": "python3 -m edgetrgl predict"}]
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps) + '{"step": "cut sh')
    (out / "smoke.log").write_text("STEP import\nOK import 80.5\nSTEP jit_script\nOK jit_script 3.0\n")
    (out / "train.log").write_text("module 1/2 (lap 1): test accuracy 30.00%\n")
    (out / "train.mem.json").write_text(json.dumps({"ru_maxrss_bytes": 900 * 2**20, "peak_rss_anon_bytes": 400 * 2**20,
                                                   "mem_available_start_bytes": 1800 * 2**20,
                                                   "mem_available_min_bytes": 1300 * 2**20, "samples": 900}))
    (out / "predict.log").write_text("/mnt/host/images/digit-0-label0.png\t0\t0.9100\n")
    summary = {"modules": [{"module": 1, "blocks": [0, 5], "test_accuracy": 0.3, "time_s": 500.0},
                           {"module": 2, "blocks": [5, 9], "test_accuracy": 0.5, "time_s": 300.0}],
               "best_module": {"module": 2, "test_accuracy": 0.5}, "wall_time_s": 800.0,
               "plan": {"offload": "host", "cache": {"mode": "host", "reason": "fits"},
                        "process": {"estimated_peak_bytes": 420 * 2**20, "footprint_bytes": 380 * 2**20,
                                    "meaning": "whole process on rpi4-2gb: 1.8 GiB"}}}
    (out / "run" / "summary.json").write_text(json.dumps(summary))
    if killed_mid_step:
        (out / "killed.log").write_text("module 1/2 (lap 1): test accuracy 30.00%\n")
        (out / "killed.mem.jsonl").write_text('{"t": 1, "RssAnon": 1000}\n{"t": 2, "RssAnon": 3000}\n{"t": 3, "Rss')
    return tmp_path / "boot"


def test_collect_reads_a_boot_and_the_report_shows_accuracies_the_estimate_ratio_and_the_oom_kill(tmp_path):
    record = results.collect(_fake_boot(tmp_path), "full-2.14.1", "full", "2.14.1", "QEMU emulator version 7.2.22")
    assert record["outcome"] == "powered_off" and record["job_rc"] == "0"
    assert [s["step"] for s in record["steps"]] == ["smoke", "train", "predict"]  # the cut-off last line skipped
    assert record["steps"][0]["smoke"]["steps_ok"] == {"import": 80.5, "jit_script": 3.0}
    assert record["board"]["midr_el1"] == "0x00000000410fd083" and record["board"]["cpu_part"] == "0xd08"
    assert record["board"]["mem_total_bytes"] == 2010000 * 1024
    assert record["run"]["estimated_peak_bytes"] == 420 * 2**20
    text = results.report([record])
    assert "module 1 (blocks 0-4) 30.0%" in text and "module 2 (blocks 5-8) 50.0%" in text
    assert "**1.05x**" in text  # 420 MiB estimated against a 400 MiB sampled anonymous peak
    assert "**guest kernel OOM kill** (dmesg): pid 412 `python3`, anon-rss 1800 MiB" in text
    assert "| 2.14.1 | ? | unfinished | 2 packages | ok (80 s) | ok (3 s) | ok (900 s), best 50.0% |" in text
    assert "digit-0-label0.png\t0\t0.9100" in text


def test_collect_keeps_a_step_the_power_cut_stopped_and_write_keeps_the_latest_boot(tmp_path):
    boot_dir = _fake_boot(tmp_path, killed_mid_step=True)
    record = results.collect(boot_dir, "resume1-2.14.1", "resume1", "2.14.1", "")
    cut = next(s for s in record["steps"] if s["step"] == "killed")
    assert cut["rc"] is None and cut["unfinished"] and cut["samples"] == 2 and cut["peak_rss_anon_bytes"] == 3000
    records = tmp_path / "records.jsonl"
    older = dict(record, outcome="timed_out")
    records.write_text(json.dumps(older) + "\n" + json.dumps(record) + "\n")
    out = tmp_path / "RESULTS.md"
    assert results.main(["write", "--records", str(records), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("### resume1-2.14.1") == 1 and "ended: **powered_off**" in text
    assert "`killed`: no result (cut off by the machine's end, or still running at a snapshot)" in text


def test_collect_of_a_boot_whose_host_record_was_lost_reads_its_console(tmp_path):
    """The host's run.sh (and boot.py with it) stopped while the guest ran on to its power-off: no
    boot.json, but the console says how it ended, and a failed step shows the program's last words."""
    boot_dir = _fake_boot(tmp_path)
    (boot_dir / "boot.json").unlink()
    out = boot_dir / "share" / "out"
    steps = [{"step": "train", "rc": 1, "wall_s": 160.0, "limit_s": 5400, "command": "python3 -m edgetrgl train"}]
    (out / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (out / "train.log").write_text("Traceback (most recent call last):\nModuleNotFoundError: No module named 'x'\n"
                                   "memwatch: exit 1, ru_maxrss 273.9 MiB\n")
    (out / "smoke.log").unlink(); (out / "predict.log").unlink()
    assert results.collect(boot_dir, "full-2.4.1", "full", "2.4.1", "")["outcome"] is None  # no console either
    (boot_dir / "console.log").write_text("edgetrgl-init: powering off\n[  815.4] reboot: Power down\n")
    record = results.collect(boot_dir, "full-2.4.1", "full", "2.4.1", "")
    assert record["outcome"].startswith("powered_off (host record lost") and record["boot_wall_s"] is None
    text = results.report([record])
    assert "exit 1: ModuleNotFoundError: No module named 'x'" in text and "after None s" not in text


def test_collect_of_a_missing_boot_folder_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        results.main(["collect", str(tmp_path / "nope"), "--name", "x", "--job", "full", "--torch", "2.14.1",
                      "--records", str(tmp_path / "r.jsonl")])
    assert exc.value.code == 2 and "no boot folder" in capsys.readouterr().err


initrd = load("initrd")

MODULES_DEP = """kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko
kernel/net/9p/9pnet.ko:
"""


def test_initrd_loads_each_module_after_its_dependencies_and_only_what_the_root_disk_needs():
    order = initrd.load_order(initrd.parse_modules_dep(MODULES_DEP), initrd.ROOT_MODULES)
    names = [initrd.module_name(p) for p in order]
    assert set(names) == {"virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_blk",
                          "ext4", "crc16", "mbcache", "jbd2"}  # no 9p; crc32c_generic absent here: skipped
    for module, deps in (("virtio_pci", ("virtio_pci_legacy_dev", "virtio_pci_modern_dev")),
                         ("ext4", ("crc16", "mbcache", "jbd2"))):
        assert all(names.index(d) < names.index(module) for d in deps)
    assert initrd.module_name("kernel/drivers/net/virtio-net.ko.xz") == "virtio_net"


def test_initrd_cpio_is_newc_that_cpio_readers_parse(tmp_path):
    data = initrd.cpio_newc([("bin", 0o40755, b""), ("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"),
                             ("init", 0o100755, b"x" * 5)])
    entries, pos = [], 0
    while True:
        header = data[pos:pos + 110].decode()
        assert header.startswith("070701") and pos % 4 == 0
        fields = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = pos + 110 + namesize + (-(110 + namesize) % 4)
        body = data[pos:pos + size]
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            break
        entries.append((name, fields[1], body))
    assert entries == [("bin", 0o40755, b""), ("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"), ("init", 0o100755, b"xxxxx")]
    assert pos == len(data)


def test_constraints_pin_a_release_that_passed_every_step_and_name_the_ones_that_died(tmp_path):
    good = results.collect(_fake_boot(tmp_path / "a"), "full-2.11.0", "full", "2.11.0", "")
    for step in good["steps"]:
        step["rc"] = 0
    good["steps"].append({"step": "export", "rc": 0, "wall_s": 1.0})
    good["installed"] = ["torch==2.11.0", "torchvision==0.26.0", "numpy==2.4.6"]
    bad = results.collect(_fake_boot(tmp_path / "b"), "full-2.14.1", "full", "2.14.1", "")
    bad["steps"][0] = {"step": "smoke", "rc": 132, "smoke": {"died_in_step": "matmul"}}
    bad["unhandled_signals"] = ["python3[530]: unhandled exception: undefined instruction in libtorch_cpu.so"]
    assert results.verdict(good)[0] == "good"
    assert results.verdict(bad) == ("avoid", "Illegal instruction (SIGILL) in `matmul`; dmesg: "
                                     "python3[530]: unhandled exception: undefined instruction in libtorch_cpu.so")
    text = results.constraints([good, bad], "2.11.0", "2026-12-01", where_folder=tmp_path, qemu_user_results=tmp_path / "none.json")
    assert text.endswith("numpy==2.4.6\ntorch==2.11.0\ntorchvision==0.26.0\n")
    assert "#   torch 2.11.0: runs" in text and "#   torch 2.14.1: AVOID: Illegal instruction (SIGILL) in `matmul`" in text
    good["threads"], bad["threads"] = 1, 2
    text = results.constraints([good, bad], "2.11.0", "2026-12-01", where_folder=tmp_path, qemu_user_results=tmp_path / "none.json")
    assert "#   torch 2.14.1, 2 torch thread(s): AVOID" in text and "measured with OMP_NUM_THREADS=1" in text
    partial = dict(good, steps=[s for s in good["steps"] if s["step"] != "export"])
    assert results.verdict(partial) == ("unknown", "not every step ran")
    assert results.verdict(partial, ("smoke", "train")) == ("good", "smoke, train and predict ran (export not finished)")
    with pytest.raises(SystemExit, match="no `full` boot that passed"):
        results.constraints([good, bad], "2.14.1", "2026-12-01")


def test_report_lists_where_the_threaded_smoke_tests_died(tmp_path):
    (tmp_path / "smoke-2.11.0-t2.json").write_text(json.dumps({
        "torch": "2.11.0", "threads": 2, "strace": True, "rc": 132, "steps": "STEP import OK import 133.9 STEP matmul ",
        "where": {"library": "/opt/torch-2.11.0/torch/lib/libnvpl_blas_core.so.0", "symbol": "f+0x28",
                  "instruction_word": "0xf8e30002", "instruction": "atomic memory operation (LSE, ARMv8.1)"}}))
    (tmp_path / "smoke-2.11.0-t1.json").write_text(json.dumps({
        "torch": "2.11.0", "threads": 1, "strace": False, "rc": 0, "steps": "OK import 1.0", "where": None}))
    rows = results.where_rows(tmp_path)
    assert "| 2.11.0 | 1 | exit 0 | OK import 1.0 | - |" in rows
    assert ("| 2.11.0 | 2 | exit 132 | STEP import OK import 133.9 STEP matmul | `libnvpl_blas_core.so.0` `f+0x28`, "
            "word `0xf8e30002`: atomic memory operation (LSE, ARMv8.1) |") in rows
    assert results.where_rows(tmp_path / "none") == []
