"""Accepting connections: every connection that is waiting, each time the listener is ready.

uvloop's own server (``loop.create_server``) accepts one connection per turn of the event
loop: libuv 1.45 stopped accepting in a loop (libuv pull request 3696) and relies on level-
triggered polling to be told of the next one. A turn of the loop reads from every ready
connection first, so once hundreds of connections are busy a turn takes milliseconds, and a
burst of new connections (wrk and ab open all of theirs at once) waits hundreds of turns:
measured at 1000 connections, the last was accepted 1.7-5 s after the first, and its first
request -- already sent, sitting in the kernel -- waited that long (docs/many-connections.md).
asyncio's server accepts up to ``backlog`` per turn, and so does this one, on either loop.

Each accepted socket becomes a connection through ``loop.connect_accepted_socket``, the
loops' public way to wrap a socket we accepted ourselves; both turn TCP_NODELAY on for it as
their own servers do, so a knob left unset still leaves the stock behaviour.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

__all__ = ["ACCEPT_RETRY_SECONDS", "Listener"]

# Out of descriptors: stop accepting for this long, as asyncio's own server does, rather than
# spin on a listener that stays ready while accept() keeps failing.
ACCEPT_RETRY_SECONDS = 1.0
# A connection that went away before we accepted it, or a transient kernel shortage: the
# next one may be fine.
_SKIPPABLE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS, errno.ENOMEM})
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})


class Listener:
    """A listening socket whose every waiting connection is accepted when it is ready."""

    def __init__(self, sock: socket.socket, protocol_factory: Callable[[], asyncio.BaseProtocol],
                 *, batch: int, on_accept_error: Callable[[OSError], None] = lambda error: None,
                 hand_over: Callable[[socket.socket], None] | None = None) -> None:
        """``hand_over``: takes each accepted socket instead of ``protocol_factory`` (a TLS
        listener's handshakes, lab/http/handshake.py)."""
        self.sock = sock
        self._factory = protocol_factory
        self._hand_over = hand_over
        self._batch = max(1, batch)  # the backlog: no more can be waiting than that
        self._on_accept_error = on_accept_error
        self._loop = asyncio.get_running_loop()
        self._opening: set[asyncio.Task[object]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop.add_reader(sock.fileno(), self._accept_waiting)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else (self.sock,)

    def _accept_waiting(self) -> None:
        for _ in range(self._batch):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left: the loop tells us of the next one
            except OSError as error:
                if error.errno in _OUT_OF_DESCRIPTORS:
                    self._pause_accepting()
                    self._on_accept_error(error)
                    return
                if error.errno in _SKIPPABLE:
                    continue
                raise
            conn.setblocking(False)
            if self._hand_over is not None:
                self._hand_over(conn)
            else:
                self._open(conn)

    def _open(self, conn: socket.socket) -> None:
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
        self._opening.add(task)
        task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[object]) -> None:
        self._opening.discard(task)
        if not task.cancelled():
            task.exception()  # read, not raised: a peer gone before its first turn is no error of ours

    def _pause_accepting(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self._retry = self._loop.call_later(ACCEPT_RETRY_SECONDS, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._retry = None
        if not self._closed:
            self._loop.add_reader(self.sock.fileno(), self._accept_waiting)

    def close(self) -> None:
        """Stop listening; connections already made stay (their owner closes them)."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    async def wait_closed(self) -> None:
        """Until every connection accepted before close() has been handed to its protocol."""
        if self._opening:
            await asyncio.wait(list(self._opening))
