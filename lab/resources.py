"""Process limits the lab raises for itself, so big experiments do not fail on a default."""

from __future__ import annotations

import multiprocessing
import resource
import sys


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
