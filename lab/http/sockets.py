"""The socket-level knobs of one accepted connection, set the same way for HTTP and WebSocket.

What to write is worked out once per configuration from the knobs' declarations
(lab/http/knobs.py's ``SocketPlan``, kept in ``Settings.sockets``, which also reads them
back); here it is only written.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.http.state import Settings


def apply_socket_options(sock: Any, settings: Settings) -> None:
    """A new connection: write every socket knob that is set, and nothing else."""
    for level, option, value in settings.sockets.on_accept:
        sock.setsockopt(level, option, value)


def change_socket_options(sock: Any, settings: Settings) -> None:
    """An open connection, on a live change: write what changed since the settings it had, each
    way ("off" must undo "on"), except where the kernel's default cannot be written back."""
    for level, option, value in settings.sockets.on_change:
        sock.setsockopt(level, option, value)


def rearm_quickack(sock: Any) -> None:
    """Linux clears TCP_QUICKACK as soon as it has acknowledged: a connection that wants it
    sets it again after every read."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
