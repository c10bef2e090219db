"""Process limits the lab raises for itself, so big experiments do not fail on a default."""

from __future__ import annotations

import resource


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
