"""The lab's own processes: the limits it raises for itself, so big experiments do not fail on a
default, and how it starts them (one start method for the generator's workers, its calibration
and the server's process mode)."""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
from multiprocessing.context import ForkServerContext, SpawnContext

from lab.errors import ConfigError

START_METHODS = ("forkserver", "spawn")
# The start methods the lab uses (see process_context).
ProcessContext = SpawnContext | ForkServerContext


def raise_open_file_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit; returns the new soft limit.

    Every connection is a file descriptor: the seed article's 1000-connection run needs more
    than the common default soft limit of 1024 on both the generator's and the server's side.
    Only the soft limit is raised, which needs no privilege.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def refuse_when_imported_by_a_new_process(what: str) -> None:
    """End a process that is importing the user's script to become one of the lab's processes
    (``spawn`` and ``forkserver`` do that) when the script starts ``what`` at its top level.

    Python would raise a long RuntimeError in the new process and the lab would only see it die;
    this says what to do in one line instead (the process exits with status 1).
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # Printed here: a forkserver child ends with os._exit, which would drop SystemExit's text.
        print(f"lab: the script started {what} again when a new process of the lab imported it; "
              "put the script's code under `if __name__ == \"__main__\":`", file=sys.stderr, flush=True)
        raise SystemExit(1)


def process_context() -> ProcessContext:
    """forkserver where it exists (fast starts, no copy of a Jupyter kernel's state), else spawn.

    ``LAB_START_METHOD=spawn`` or ``=forkserver`` forces one (forkserver is Python 3.14's default
    on Linux; the test suite runs under it this way on 3.11-3.13). Never fork: forking a kernel
    with its threads and zmq sockets is unsafe.
    """
    method = os.environ.get("LAB_START_METHOD")
    if method is None:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return context_for(method)


def context_for(method: str) -> ProcessContext:
    """The multiprocessing context of a start method the lab allows."""
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    if method != "forkserver":
        allowed = ", ".join(START_METHODS)
        raise ConfigError("LAB_START_METHOD", f"{method!r} is not allowed; allowed: {allowed}")
    context = multiprocessing.get_context("forkserver")
    # Imported once in the fork server, so a generator worker starts without importing it.
    context.set_forkserver_preload(["lab.engine.worker"])
    return context


def resident_kib(pid: int) -> int:
    """A process's resident memory (VmRSS), in KiB: what a server really holds, as ``ps`` shows."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    raise ProcessLookupError(f"no resident memory to read for process {pid}: has it exited?")
