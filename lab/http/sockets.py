"""The socket-level knobs of one accepted connection, set the same way for HTTP and WebSocket."""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.http.core import Settings


def apply_socket_options(sock: Any, settings: Settings) -> None:
    """Set every socket-level knob, each way: on a live change "off" must undo "on"."""
    # uvloop and asyncio both turn TCP_NODELAY on for every accepted socket; set it either
    # way so that "off" really means Nagle's algorithm is on.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if settings.nodelay else 0)
    linger = settings.linger_seconds
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", linger is not None, linger or 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1 if settings.quickack else 0)
    # Buffer sizes set while connected: the send side takes it at once; a receive window
    # cannot scale past what the handshake agreed (the listener has the new size for new
    # connections). None leaves the size as it is: autotuning cannot be switched back on.
    if settings.send_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.send_buffer_bytes)
    if settings.recv_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, settings.recv_buffer_bytes)


def rearm_quickack(sock: Any) -> None:
    """Linux clears TCP_QUICKACK as soon as it has acknowledged: a connection that wants it
    sets it again after every read."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
