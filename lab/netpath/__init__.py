"""An emulated network path on one machine: a real round-trip time, loss and rate limits.

The server listens in a network namespace of its own, reached from the client's namespace
through two TUN devices; a relay process moves the IP packets between them, adding delay,
jitter, loss, a rate limit and reordering (see docs/netpath.md).

    from lab.netpath import Path, start_path
    with start_path(Path(delay_ms=20)) as path:   # needs root or CAP_NET_ADMIN
        ...                                        # listen on path.server_address in path.namespace
    with Path(delay_ms=20).to("127.0.0.1:8000") as front:   # a server the lab did not start
        ...                                        # reach it at front.url
"""

from lab.netpath.emulator import EmulatedPath, start_path
from lab.netpath.front import PathInFront, start_path_to
from lab.netpath.spec import Path
from lab.netpath.system import missing_privilege

__all__ = ["EmulatedPath", "Path", "PathInFront", "missing_privilege", "start_path", "start_path_to"]
