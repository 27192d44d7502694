"""Device profiles, board detection on faked /proc and /etc trees, budgets on a profile, the footprint."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from edgetrgl.cli.main import main
from edgetrgl.devices import (current_footprint, detect, get_profile, list_profiles, live_memory, measure_runtime_footprint,
                              resolve_budget)
from edgetrgl.devices.profile import profile_from_toml
from edgetrgl.errors import UserError

GiB, MiB = 2**30, 2**20
EXPECTED = {"jetson-nano-4gb", "jetson-orin-nano-8gb", "jetson-agx-orin-32gb", "rpi4-2gb", "rpi4-4gb", "rpi4-8gb",
            "rpi5-4gb", "rpi5-8gb", "cuda", "cpu"}


def fake_machine(root: Path, *, model: str | None = None, mem_total_kib: int, tegra: bool = False) -> Path:
    """Write the files detect() reads, as a Jetson or a Pi would have them."""
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "etc").mkdir()
    if model is not None:
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")  # the kernel's NUL
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_total_kib} kB\nMemFree:  1000 kB\n"
                                       f"MemAvailable:   {mem_total_kib // 2} kB\n")
    if tegra:
        (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.0\n")
    return root


# -- profiles --------------------------------------------------------------------------------------

def test_every_target_has_a_profile_with_sources():
    assert set(list_profiles()) == EXPECTED
    for name in list_profiles():
        p = get_profile(name)
        assert p.os_reserve_bytes > 0 and p.storage_read_mb_s > 0 and p.storage_write_mb_s > 0
        assert all(p.sources.values()) and set(p.sources) >= {"memory", "storage", "cpu", "dtypes", "os_reserve"}
        if not p.generic:
            assert p.total_bytes > p.os_reserve_bytes and p.cpu_cores == p.default_threads


def test_board_figures_and_budget_scope():
    pi = get_profile("rpi4-2gb")
    assert (pi.total_bytes, pi.shared_memory, pi.accelerator, pi.cpu_model, pi.storage_kind) == \
        (2 * GiB, True, "none", "Cortex-A72", "sd")
    assert pi.preferred_dtypes == ("fp32",) and get_profile("rpi5-8gb").cpu_model == "Cortex-A76"
    orin = get_profile("jetson-orin-nano-8gb")
    assert orin.shared_memory and orin.accelerator == "cuda" and orin.cpu_model == "Cortex-A78AE"
    assert {"fp16", "bf16"} <= set(orin.preferred_dtypes)
    assert get_profile("jetson-nano-4gb").cpu_model == "Cortex-A57"
    assert "bf16" not in get_profile("jetson-nano-4gb").preferred_dtypes  # Maxwell has none
    # Shared DRAM and no accelerator: the budget is the whole process; a discrete GPU: its memory.
    assert [get_profile(n).budget_scope for n in ("rpi4-2gb", "jetson-nano-4gb", "cpu", "cuda")] == \
        ["process", "process", "process", "device"]


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(UserError, match="unknown device profile 'rpi3'.*rpi4-2gb"):
        get_profile("rpi3")
    assert list_profiles("rpi5*") == ["rpi5-4gb", "rpi5-8gb"]


def test_a_profile_file_must_carry_sources_and_consistent_sizes():
    good = {"name": "x", "description": "d", "memory": {"total": "1GiB", "total_bytes": GiB, "shared": True,
                                                        "os_reserve": "100MiB", "os_reserve_bytes": 100 * MiB,
                                                        "source": "s", "os_reserve_source": "s"},
            "accelerator": {"kind": "none", "source": "s"},
            "storage": {"kind": "sd", "read_mb_s": 40, "write_mb_s": 20, "source": "s"},
            "cpu": {"model": "Cortex-A72", "cores": 4, "default_threads": 4, "source": "s"},
            "dtypes": {"preferred": ["fp32"], "source": "s"}}
    assert profile_from_toml(good, "x.toml").total_bytes == GiB
    no_source = {**good, "storage": {**good["storage"], "source": ""}}
    with pytest.raises(ValueError, match="source.*storage"):
        profile_from_toml(no_source, "x.toml")
    drift = {**good, "memory": {**good["memory"], "total": "2GiB"}}
    with pytest.raises(ValueError, match="memory.total"):
        profile_from_toml(drift, "x.toml")


def test_profiles_ship_as_package_data(tmp_path):
    """Build the wheel (offline, from a copy of the sources) and find every profile inside it."""
    if importlib.util.find_spec("setuptools") is None:  # the build backend; --no-build-isolation: nothing downloaded
        pytest.skip("building the wheel offline needs setuptools installed")
    root = Path(__file__).resolve().parent.parent
    sources = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    shutil.copytree(root / "edgetrgl", sources / "edgetrgl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, sources / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(sources)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("edgetrgl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name: archive.read(name) for name in archive.namelist() if name.startswith("edgetrgl/devices/profiles/")}
    assert list_profiles() and sorted(shipped) == [f"edgetrgl/devices/profiles/{n}.toml" for n in list_profiles()]
    assert all(data == (root / name).read_bytes() for name, data in shipped.items())


# -- detection -------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, mem_kib, tegra, expected", [
    ("Raspberry Pi 4 Model B Rev 1.4", 1_939_000, False, "rpi4-2gb"),
    ("Raspberry Pi 4 Model B Rev 1.5", 7_999_000, False, "rpi4-8gb"),
    ("Raspberry Pi 5 Model B Rev 1.0", 4_045_000, False, "rpi5-4gb"),
    ("NVIDIA Jetson Nano Developer Kit", 4_059_000, True, "jetson-nano-4gb"),
    ("NVIDIA Jetson Orin Nano Developer Kit", 7_620_000, True, "jetson-orin-nano-8gb"),
    ("NVIDIA Jetson AGX Orin Developer Kit", 31_998_000, True, "jetson-agx-orin-32gb"),
    (None, 31_998_000, True, "jetson-agx-orin-32gb"),  # release file only: chosen by memory
])
def test_detect_maps_board_and_memory_to_a_profile(tmp_path, model, mem_kib, tegra, expected):
    found = detect(fake_machine(tmp_path, model=model, mem_total_kib=mem_kib, tegra=tegra),
                   cuda_available=lambda: pytest.fail("a known board must not ask for CUDA"))
    assert found.profile.name == expected
    assert found.board == model and found.jetson == tegra and found.mem_total_bytes == mem_kib * 1024


def test_detect_falls_back_to_generic(tmp_path):
    pi1gb = fake_machine(tmp_path / "a", model="Raspberry Pi 4 Model B Rev 1.2", mem_total_kib=900_000)
    found = detect(pi1gb, cuda_available=lambda: False)
    assert found.profile.name == "cpu" and "matches no profile" in found.reason
    pc = fake_machine(tmp_path / "b", mem_total_kib=24_000_000)
    assert detect(pc, cuda_available=lambda: True).profile.name == "cuda"
    assert detect(pc, cuda_available=lambda: False).profile.name == "cpu"
    # A Jetson we have no profile for keeps a whole-process budget (its memory is shared), never `cuda`.
    nano2 = fake_machine(tmp_path / "c", model="NVIDIA Jetson Nano 2GB Developer Kit", mem_total_kib=2_000_000, tegra=True)
    assert detect(nano2, cuda_available=lambda: True).profile.name == "cpu"


def test_live_memory_reads_meminfo_and_asks_tegrastats_only_on_a_jetson(tmp_path):
    calls = []
    jetson = fake_machine(tmp_path / "j", model="NVIDIA Jetson Orin Nano Developer Kit", mem_total_kib=7_620_000, tegra=True)
    live = live_memory(jetson, nvml=lambda: [{"index": 0, "name": "Orin", "total_bytes": None, "used_bytes": None,
                                              "free_bytes": None}],
                       tegrastats=lambda t: calls.append(t) or {"ram_used_bytes": GiB, "ram_total_bytes": 7 * GiB})
    assert live["host"]["available_bytes"] == 3_810_000 * 1024 and live["host"]["source"].endswith("meminfo")
    assert live["tegrastats"]["ram_used_bytes"] == GiB and calls == [3.0]
    pi = fake_machine(tmp_path / "p", model="Raspberry Pi 5 Model B Rev 1.0", mem_total_kib=8_000_000)
    live = live_memory(pi, nvml=lambda: None, tegrastats=lambda t: pytest.fail("not a Jetson"))
    assert live["tegrastats"] is None and live["nvml"] is None


def test_cli_lists_shows_and_detects(tmp_path, capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "rpi4-2gb" in out and "jetson-orin-nano-8gb" in out
    assert main(["devices", "show", "rpi5-4gb", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["cpu_model"] == "Cortex-A76" and shown["budget_scope"] == "process" and shown["sources"]["storage"]
    root = fake_machine(tmp_path, model="Raspberry Pi 4 Model B Rev 1.4", mem_total_kib=3_884_000)
    assert main(["devices", "detect", "--root", str(root), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["profile"] == "rpi4-4gb" and found["live"]["host"]["available_bytes"] == 1_942_000 * 1024
    assert main(["devices", "detect", "--root", str(root)]) == 0
    assert "rpi4-4gb" in capsys.readouterr().out
    assert main(["devices", "show", "nope"]) == 2
    assert "unknown device profile 'nope'" in capsys.readouterr().err
    assert main(["devices", "show"]) == 2


# -- budgets ---------------------------------------------------------------------------------------

def test_budget_defaults_to_memory_less_reserve_and_says_what_it_covers():
    b = resolve_budget(get_profile("rpi4-2gb"))
    assert b.budget_bytes == 2 * GiB - 256 * MiB and b.scope == "process" and b.source == "profile"
    assert "whole process" in b.meaning and not b.warnings
    gpu = resolve_budget(get_profile("cuda"), machine_memory_bytes=16 * GiB)
    assert gpu.budget_bytes == 16 * GiB - 512 * MiB and gpu.scope == "device" and "GPU memory" in gpu.meaning


def test_user_budget_warning_and_error_on_a_board():
    pi = get_profile("rpi4-2gb")
    b = resolve_budget(pi, 650 * MiB)
    assert b.budget_bytes == 650 * MiB and b.source == "user" and not b.warnings
    inside_reserve = resolve_budget(pi, 2 * GiB - 100 * MiB)  # soft: the reserve is an estimate
    assert inside_reserve.budget_bytes == 2 * GiB - 100 * MiB and "OS" in inside_reserve.warnings[0]
    with pytest.raises(UserError, match="more than the 2.0 GiB of rpi4-2gb"):  # hard: the board has no more
        resolve_budget(pi, 4 * GiB)
    # A generic profile is "this machine": planning beyond it is allowed, with a warning.
    big = resolve_budget(get_profile("cpu"), 64 * GiB, machine_memory_bytes=24 * GiB)
    assert big.budget_bytes == 64 * GiB and "this machine" in big.warnings[0]


# -- runtime footprint -----------------------------------------------------------------------------

def test_current_footprint_reads_anon_and_file_pages(tmp_path):
    status = tmp_path / "status"
    status.write_text("VmHWM:\t 600000 kB\nVmRSS:\t  522420 kB\nRssAnon:\t  287736 kB\nRssFile:\t  234684 kB\n"
                      "RssShmem:\t       0 kB\n")
    f = current_footprint(str(status))
    assert (f.rss_bytes, f.anon_bytes, f.file_bytes) == (522420 * 1024, 287736 * 1024, 234684 * 1024)
    live = current_footprint()
    assert 0 < live.anon_bytes <= live.rss_bytes


def test_measured_footprint_grows_with_the_model():
    from edgetrgl.models import create_model

    def param_bytes(width: int) -> int:
        net = create_model("resnet20", width=width)
        return sum(t.numel() * t.element_size() for m in (net.stem, *net.blocks) for t in m.parameters())

    small = measure_runtime_footprint("resnet20", model_options={"width": 4}, timeout_s=120)
    big = measure_runtime_footprint("resnet20", model_options={"width": 128}, timeout_s=120)
    assert small.anon_bytes > 100 * MiB  # torch alone is far above that
    grown = param_bytes(128) - param_bytes(4)  # ~68 MiB of fp32 weights
    assert 0.8 * grown < big.anon_bytes - small.anon_bytes < 1.5 * grown + 32 * MiB
    with pytest.raises(UserError, match="unknown model"):
        measure_runtime_footprint("no-such-model", timeout_s=120)


_PLAN_THEN_MEASURE = """
import json, sys
from edgetrgl.config import TrainConfig
from edgetrgl.data import load_dataset
from edgetrgl.devices import current_footprint
from edgetrgl.training.run import plan_run
cfg = TrainConfig(model="resnet20", model_options={"width": 4}, dataset="synthetic", modules=3, batch_size=64,
                  device="cpu", out="", device_profile="rpi4-2gb", budget="1500MiB")
plan, net = plan_run(cfg, load_dataset("synthetic", num_train=64, num_test=32, seed=0)[2])
print(json.dumps({"planned": plan.process["footprint_bytes"], "after": current_footprint().anon_bytes}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RssAnon is Linux's")
def test_process_footprint_includes_the_planners_own_runtime():
    # The first fake-tensor estimate imports torch._dynamo, sympy and ~900 modules (~80 MiB that stay for
    # the run): a footprint measured before it made the default rpi4-2gb plan 80 MiB short. Fresh
    # interpreter, so nothing was imported by another test.
    out = subprocess.run([sys.executable, "-c", _PLAN_THEN_MEASURE], capture_output=True, text=True, timeout=180,
                         check=True)
    sizes = json.loads(out.stdout.strip().splitlines()[-1])
    assert sizes["after"] - sizes["planned"] < 24 * MiB, sizes


def test_host_cache_in_the_whole_process_estimate(synthetic_data):
    from edgetrgl.cache.placement import output_elements
    from edgetrgl.network import input_shape
    from edgetrgl.planning.run_plan import _tensors_and_host_cache, _with_prefetched_inputs
    from edgetrgl.training.run import plan_run
    from tests.conftest import tiny_config

    wide = dict(model_options={"width": 32}, device_profile="rpi4-2gb", cache="host")  # ~24 MiB of cached outputs
    plan, net = plan_run(tiny_config(budget="1500MiB", **wide), synthetic_data[2])
    cache = plan.cache.bytes_needed
    assert plan.cache.mode == "host" and cache > 16 * MiB
    elements = output_elements(net, input_shape(synthetic_data[2]))
    # a write pass holds module k-1's outputs (read) and module k's (written): ResNet-20's halve, so 1.5x the largest
    assert _tensors_and_host_cache(elements, plan.cache, 0) == cache + cache // 2
    assert _tensors_and_host_cache(elements, plan.cache, 10 * cache) == 11 * cache  # training dominates
    disk = plan.cache.__class__.from_dict({**plan.cache.to_dict(), "mode": "disk"})
    assert _tensors_and_host_cache(elements, disk, 5) == 5  # a disk cache is page cache, not anon
    # modules 2..K read cached batches: a prefetch thread (CUDA; a disk cache) holds 3 beyond the step's own
    # (module 1's output: 32x16x16); a host cache on the CPU is served inline, nothing waits beside the step
    peaks = [m["estimated_peak_bytes"] for m in plan.estimates["modules"]]
    in_flight = [0, 3 * 64 * 32 * 16 * 16 * 4, 3 * 64 * 64 * 8 * 8 * 4]
    estimate = lambda device: _with_prefetched_inputs(elements, plan.cache, plan.estimates,  # noqa: E731
                                                      64, max(peaks), torch.device(device))
    assert estimate("cuda") == max(p + extra for p, extra in zip(peaks, in_flight))
    assert estimate("cpu") == max(peaks)
    # auto moves such a cache to disk; a forced --cache host would be OOM-killed on the board: say so first
    over = plan.process["estimated_peak_bytes"] - cache // 2  # room for the module, not for the cache beside it
    with pytest.raises(UserError, match="--cache disk or auto"):
        plan_run(tiny_config(budget=str(over), **wide), synthetic_data[2])


# -- startup (issue 9, item 7) ---------------------------------------------------------------------

def test_import_edgetrgl_leaves_heavy_optional_modules_alone():
    code = ("import sys, edgetrgl; heavy = [m for m in ('torchvision', 'matplotlib', 'edgetrgl.devices', "
            "'torch.distributed._tools.mem_tracker') if m in sys.modules]; print(heavy)")
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                         env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}, check=True)
    assert out.stdout.strip() == "[]"
