"""Pin a subprocess to CPU cores with ``taskset -c``.

Comparisons are only fair when the server under test and the load generator do not fight for
one core, so peers and wrk both take ``cores`` and both go through here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from lab.errors import PinningError

Cores = Sequence[int]




def usable_cores() -> set[int]:
    """Cores this process may run on: what taskset can grant a child."""
    return os.sched_getaffinity(0)


def check_cores(cores: Cores) -> tuple[int, ...]:
    """The cores as a tuple, or a PinningError naming the cores this machine offers."""
    chosen = tuple(cores)
    allowed = usable_cores()
    if not chosen:
        raise PinningError("cores: give at least one core, or None to leave the process unpinned")
    unknown = sorted(set(chosen) - allowed)
    if unknown:
        raise PinningError(f"cores: {unknown} not available here; this process may use {sorted(allowed)}")
    return chosen


def pinned_command(command: Sequence[str], cores: Cores | None) -> list[str]:
    """``command`` prefixed with ``taskset -c CORES``, or unchanged when ``cores`` is None.

    taskset execs the command, so the child's pid is the pid of the pinned program itself.
    """
    if cores is None:
        return list(command)
    chosen = check_cores(cores)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise PinningError("taskset not found: install Debian's util-linux package to pin to cores")
    return [taskset, "-c", ",".join(str(core) for core in chosen), *command]


def server_and_load_cores() -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Default split: the first usable core for the server, the next for the load generator.

    (None, None) on a one-core machine: pinning both to the same core adds nothing.
    """
    cores = sorted(usable_cores())
    if len(cores) < 2:
        return None, None
    return (cores[0],), (cores[1],)
