"""Device profiles by name: one TOML file per target in ``edgetrgl/devices/profiles/``.

    get_profile("rpi4-2gb").total_bytes      # 2 GiB
    list_profiles("jetson*")                 # ["jetson-agx-orin-32gb", ...]

Adding a target is one TOML file in that folder (shipped as package data); nothing else changes.
"""

from __future__ import annotations

import fnmatch
import functools
import sys
from importlib import resources

from edgetrgl.devices.profile import DeviceProfile, profile_from_toml
from edgetrgl.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@functools.cache
def _profiles() -> dict[str, DeviceProfile]:
    """Every shipped profile, read once; a malformed shipped file is a bug (ValueError)."""
    found: dict[str, DeviceProfile] = {}
    folder = resources.files("edgetrgl.devices") / "profiles"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".toml"):
            continue
        profile = profile_from_toml(tomllib.loads(entry.read_text()), entry.name)
        if profile.name != entry.name[: -len(".toml")]:
            raise ValueError(f"{entry.name}: name = {profile.name!r} does not match the file name")
        found[profile.name] = profile
    return found


def list_profiles(pattern: str = "*") -> list[str]:
    """Names of the shipped profiles matching a shell-style ``pattern``, sorted."""
    return sorted(name for name in _profiles() if fnmatch.fnmatchcase(name, pattern))


def get_profile(name: str) -> DeviceProfile:
    """The profile called ``name``.

    Raises:
        UserError: no such profile (the message lists the known ones).
    """
    try:
        return _profiles()[name]
    except KeyError:
        raise UserError(f"unknown device profile {name!r}; known: {', '.join(list_profiles())}") from None
