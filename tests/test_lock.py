"""requirements.lock: what pyproject.toml asks for is locked, and what is installed is what is locked.

scripts/setup.sh installs with the lock as constraints, so a fresh machine gets the versions CI
tested; these checks fail when the lock was not updated after pyproject.toml changed, or when this
environment was installed some other way (then its results are not what CI would see).
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import lab

ROOT = Path(lab.__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
# The lab itself is installed from the tree, not from the lock.
NOT_LOCKED = {"latency-lab"}


def locked_here() -> dict[str, str]:
    """name -> version the lock pins for this interpreter and platform (markers evaluated)."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line or line.startswith((" ", "#", "-")):
            continue
        requirement, _, marker = line.partition(";")
        name, _, version = requirement.strip().partition("==")
        assert version, f"requirements.lock: {line!r} pins no version"
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        pins[canonicalize_name(name)] = version
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in [*project["dependencies"],
                                           *project["optional-dependencies"]["dev"]]]


def test_the_lock_pins_every_declared_package_within_its_range() -> None:
    pins = locked_here()
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # declared for another Python (atheris: 3.0.0 on 3.11, 3.1.0 later)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in requirements.lock: bash scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's "
            f"{requirement.specifier}: bash scripts/lock.sh")


def test_this_environment_has_the_locked_versions() -> None:
    pins = locked_here()
    if not pins:
        pytest.fail("requirements.lock pins nothing for this Python")
    installed = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    differ = {name: (installed.get(name), version) for name, version in pins.items()
              if name not in NOT_LOCKED and installed.get(name) != version}
    assert not differ, f"installed vs locked (set up with scripts/setup.sh): {differ}"
