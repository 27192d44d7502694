"""Device profiles (Jetson, Raspberry Pi, generic CUDA/CPU), board detection, and budgets on them.

    profile = get_profile("rpi4-2gb")            # or detect().profile
    budget = resolve_budget(profile)             # whole-process budget: 2 GiB less the OS reserve
    fixed = current_footprint().anon_bytes       # what torch + model already hold in this process

Not imported by ``import edgetrgl``: only the commands that use profiles pay for it.
"""

from edgetrgl.devices.budget import DeviceBudget, machine_memory, resolve_budget
from edgetrgl.devices.detect import Detection, detect, live_memory, read_board_model
from edgetrgl.devices.footprint import RuntimeFootprint, current_footprint, measure_runtime_footprint
from edgetrgl.devices.profile import DeviceProfile
from edgetrgl.devices.registry import get_profile, list_profiles

__all__ = [
    "Detection", "DeviceBudget", "DeviceProfile", "RuntimeFootprint", "current_footprint", "detect", "get_profile",
    "list_profiles", "live_memory", "machine_memory", "measure_runtime_footprint", "read_board_model",
    "resolve_budget",
]
