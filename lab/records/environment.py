"""Where and with what a run was measured: recorded with every run, because absolute latency
figures mean little without the machine, kernel and library versions behind them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from lab.errors import CorruptRecord

# The folder that holds the lab package (a git checkout, when it is run from one).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, kw_only=True)
class Environment:
    python: str
    python_implementation: str
    lab: str
    uvloop: str | None
    httptools: str | None
    numpy: str | None
    event_loop: str | None  # the loop the load generator ran on ("uvloop", "asyncio"), if known
    os: str
    kernel: str
    machine: str
    cpu_model: str | None
    cpu_count: int | None  # logical CPUs in the machine
    usable_cpus: int | None  # CPUs this process may run on (taskset / cgroup affinity)
    hostname: str
    git_commit: str | None  # the lab's own commit, when run from a git checkout
    git_dirty: bool | None  # uncommitted changes in that checkout
    started_at: str  # ISO 8601, UTC, when the run started
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer lab wrote; kept, not lost

    @classmethod
    def capture(cls, *, event_loop: str | None = None,
                started_at: dt.datetime | None = None) -> Environment:
        commit, dirty = git_state(SOURCE_ROOT)
        return cls(
            python=platform.python_version(),
            python_implementation=platform.python_implementation(),
            lab=package_version("latency-lab") or "0+unknown",
            uvloop=package_version("uvloop"),
            httptools=package_version("httptools"),
            numpy=package_version("numpy"),
            event_loop=event_loop,
            os=platform.system(),
            kernel=platform.release(),
            machine=platform.machine(),
            cpu_model=cpu_model(),
            cpu_count=os.cpu_count(),
            usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            hostname=platform.node(),
            git_commit=commit,
            git_dirty=dirty,
            # Always to the microsecond, the load generator's own format: a record's start
            # then reads exactly as the run's --json printed it.
            started_at=(started_at or utc_now()).astimezone(dt.UTC).isoformat(timespec="microseconds"),
        )

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.started_at)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Environment:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = sorted(name for name in known if name not in values and name != "started_at")
        if "started_at" not in values:
            raise CorruptRecord("environment: started_at is missing")
        extra = dict(values.get("extra", {}))
        extra.update({k: v for k, v in values.items() if k not in known and k != "extra"})
        filled: dict[str, Any] = {name: values.get(name) for name in known}
        for name in missing:
            filled[name] = None
        return cls(**filled, extra=extra)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (x86 and most ARM kernels), else platform's."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or None


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the checkout the lab runs from; (None, None) outside git."""
    if not (root / ".git").exists():
        return None, None
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, dirty


def _git(root: Path, *arguments: str) -> str:
    return subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True,
                          check=True, timeout=5).stdout
