"""A new TLS connection, from accept until its handshake is done: the gate in front of OpenSSL.

Before OpenSSL sees a byte, the first bytes the client sent are peeked at (``MSG_PEEK``,
leaving them where they are). A TLS client's first record is a handshake record, byte 0x16;
anything else never becomes a TLS connection:

- a plain HTTP request (a method's capital letters) gets a plain-text ``400`` that names
  https, as nginx answers ("The plain HTTP request was sent to HTTPS port"), and is closed:
  the likeliest mistake, an ``http://`` URL for an ``https://`` server, gets a readable reason;
- other bytes are closed at once, with no answer (there is no protocol to answer in).

A handshake record goes to the loop's own TLS (``loop.connect_accepted_socket(ssl=...)``;
uvloop's is written in Cython and does the record layer outside Python's ssl module's
per-call costs). Each way out is counted in the server's errors by kind (``tls_plain_http``,
``tls_not_tls``, ``tls_handshake_failed``, ``tls_handshake_timeout``, ``tls_handshake_closed``)
and logs nothing: a flood of them must not become a flood of log lines.

Bounds: one deadline (``tls_handshake_timeout_seconds`` after accept) covers the wait for the
first byte and the handshake together, so a client that connects and sends nothing, or stops
half-way, holds its slot that long at most; and connections under way count against
``max_connections`` with the open ones, so a flood of handshakes cannot hold more than that
many sockets and TLS states (a connection beyond it is closed at accept: there is no TLS yet
to answer a 503 in, and completing a handshake to say so is the cost the flood is after).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Callable

from lab.http.state import ServerState

__all__ = ["PLAIN_HTTP_ANSWER", "Handshakes"]

_HANDSHAKE_RECORD = 0x16  # RFC 8446 section 5.1: ContentType handshake(22)
_PEEK_BYTES = 8
# A request line starts with a method: capital letters (RFC 9110 section 9, the registered ones)
_METHOD_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BODY = b"400 Bad Request: the plain HTTP request was sent to an HTTPS port; use https://\n"
PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)
_DRAIN_BYTES = 64 * 1024  # read what the plain request sent, so closing does not reset the answer


class Handshakes:
    """The accepted sockets of a TLS listener on their way to becoming connections."""

    def __init__(self, state: ServerState, protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._state = state
        self._factory = protocol_factory
        self._loop = state.loop
        # A socket waiting for its first byte: its timer (the deadline), by descriptor
        self._waiting: dict[int, tuple[socket.socket, asyncio.TimerHandle, ssl.SSLContext, float]] = {}
        self._opening: set[asyncio.Task[object]] = set()

    def start(self, conn: socket.socket) -> None:
        """Take a socket just accepted (non-blocking)."""
        state = self._state
        settings, stats = state.settings, state.stats
        context = settings.tls_context
        assert context is not None
        limit = settings.max_connections
        if limit is not None and stats.connections_open + stats.handshaking >= limit:
            stats.count_error("over_capacity")
            conn.close()
            return
        stats.handshaking += 1
        deadline = self._loop.time() + settings.tls_handshake_timeout_seconds
        self._peek(conn, context, deadline)

    def _peek(self, conn: socket.socket, context: ssl.SSLContext, deadline: float) -> None:
        try:
            head = conn.recv(_PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            # Nothing yet (a client usually sends its hello with the handshake's last ACK,
            # so this is the exception): wait for it, until the deadline.
            fd = conn.fileno()
            timer = self._loop.call_at(deadline, self._expire, fd)
            self._waiting[fd] = (conn, timer, context, deadline)
            self._loop.add_reader(fd, self._readable, fd)
            return
        except OSError:
            self._end(conn, "tls_handshake_closed")
            return
        if not head:
            self._end(conn, "tls_handshake_closed")
        elif head[0] == _HANDSHAKE_RECORD:
            self._hand_to_tls(conn, context, deadline)
        elif head[0] in _METHOD_LETTERS:
            self._answer_plain_http(conn)
        else:
            with contextlib.suppress(OSError):
                conn.recv(_DRAIN_BYTES)  # read, so that the close is a FIN, not a reset
            self._end(conn, "tls_not_tls")

    def _readable(self, fd: int) -> None:
        waiting = self._waiting.pop(fd, None)
        if waiting is None:
            return  # the deadline came first, in the same turn of the loop
        conn, timer, context, deadline = waiting
        self._loop.remove_reader(fd)
        timer.cancel()
        self._peek(conn, context, deadline)

    def _expire(self, fd: int) -> None:
        waiting = self._waiting.pop(fd, None)
        if waiting is None:
            return
        conn = waiting[0]
        self._loop.remove_reader(fd)
        self._end(conn, "tls_handshake_timeout")

    def _hand_to_tls(self, conn: socket.socket, context: ssl.SSLContext, deadline: float) -> None:
        remaining = max(0.001, deadline - self._loop.time())
        task = self._loop.create_task(self._loop.connect_accepted_socket(
            self._factory, conn, ssl=context, ssl_handshake_timeout=remaining))
        self._opening.add(task)
        task.add_done_callback(self._handshake_done)

    def _handshake_done(self, task: asyncio.Task[object]) -> None:
        self._opening.discard(task)
        stats = self._state.stats
        stats.handshaking -= 1
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            stats.tls_handshakes += 1
        else:
            stats.count_error(_kind_of(error))

    def _answer_plain_http(self, conn: socket.socket) -> None:
        try:
            conn.recv(_DRAIN_BYTES)
            conn.send(PLAIN_HTTP_ANSWER)  # small enough for any send buffer: all of it goes
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._end(conn, "tls_plain_http")

    def _end(self, conn: socket.socket, kind: str) -> None:
        conn.close()
        stats = self._state.stats
        stats.handshaking -= 1
        stats.count_error(kind)

    async def close(self) -> None:
        """Drop every connection still on its way (the server is stopping)."""
        for fd, (conn, timer, _, _) in list(self._waiting.items()):
            timer.cancel()
            self._loop.remove_reader(fd)
            conn.close()
        self._waiting.clear()
        for task in self._opening:
            task.cancel()
        if self._opening:
            await asyncio.wait(list(self._opening))


def _kind_of(error: BaseException) -> str:
    """The error kind of a handshake that did not complete."""
    if isinstance(error, ssl.SSLError):
        return "tls_handshake_failed"
    # uvloop and asyncio abort a handshake past its timeout with ConnectionAbortedError
    if isinstance(error, (TimeoutError, ConnectionAbortedError)) and "longer" in str(error):
        return "tls_handshake_timeout"
    if isinstance(error, OSError) and error.errno in (errno.ECONNRESET, errno.EPIPE, None):
        return "tls_handshake_closed"
    return "tls_handshake_failed"
