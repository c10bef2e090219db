"""A lane: one connection slot of the generator, carrying one request at a time.

What every lane type shares lives here, written once: connecting and reconnecting, the send,
the retry of an idempotent request whose reused connection died, timeouts, the row each
request becomes, and the closed loop's continuation (the next request written straight from
the callback that read the answer). A lane type says only how its connection is opened and
how an answer is read off it:

- :class:`~lab.engine.http_lane.HttpLane`: HTTP/1.1 requests, answers read by llhttp;
- :class:`~lab.engine.websocket.WebSocketLane`: messages on an upgraded connection.

Either may speak TLS (https://, wss://): the lane opens the TCP connection, then the loop's
TLS takes the socket (lab.engine.secure says why), and the first request on the connection
carries its handshake time (``tls_ns``) beside its connect time.

Its contract with this base is public: :meth:`Lane.connect`, :meth:`Lane.compose` and
:meth:`Lane.on_data` to write, :meth:`Lane.end_request`, :meth:`Lane.finish` and
:meth:`Lane.drop_connection` to call. The engine that drives the lanes (lab.engine.core) is
handed the lane type; a lane knows its engine only as a :class:`LaneOwner`, so neither
module imports the other.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import sys
from time import perf_counter_ns
from typing import Any, Protocol

from lab.engine.plan import EnginePlan
from lab.engine.recorder import ROW, Recorder
from lab.engine.secure import TlsClient
from lab.measure.samples import MISSING, ErrorKind

# Reused keep-alive connections may be closed by the server just as a request goes out
# (RFC 9112 section 9.3.1 lets a client retry an idempotent request in that case).
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
BAD_STATUS = int(ErrorKind.BAD_STATUS)
NO_ERROR = int(ErrorKind.NONE)
NO_DEADLINE = sys.maxsize


class LaneOwner(Protocol):
    """What a lane needs of the engine that drives it (lab.engine.core.Engine)."""

    plan: EnginePlan
    recorder: Recorder
    keepalive: bool
    continue_until_ns: int  # the closed loop's deadline for sending from the read callback
    started: int  # requests begun
    budget: int  # requests this process may begin
    errors: int
    stopped_by_owner: bool
    tls: TlsClient | None  # set when every connection speaks TLS
    expiry_armed: bool  # a timer watches the earliest deadline of a request in flight
    expiry_at_ns: int  # when that timer fires

    def arm_expiry(self, deadline_ns: int) -> None: ...
    def plan_retry(self, lane: Lane, now: int, error: int, status: int) -> bool: ...
    def deposit_retry_token(self) -> None: ...

    def pick_request(self) -> bytes: ...
    def lane_free(self, lane: Lane, now: int, connect_failed: bool) -> None: ...
    def count_connected(self) -> None: ...
    def count_refused(self, attempted_ns: int) -> None: ...


class Wire(asyncio.Protocol):
    """One TCP connection; it forwards its events to the lane that owns it."""

    __slots__ = ("_sent_early", "data_received", "lane", "transport")

    def __init__(self, lane: Lane, *, sent_early: bool = False) -> None:
        self.lane = lane
        self.transport: asyncio.Transport | None = None
        self._sent_early = sent_early
        # One call less per chunk on the hot path: the lane's method is the protocol's.
        self.data_received = lane.on_data  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._sent_early:
            # The lane's too, now: the answer to a request sent with the SYN (start_connecting)
            # may be read before create_connection returns, and the lane answers it on this
            # transport. Only then: a connect cancelled after this point (the run's connect-
            # ahead bound) would leave the lane a transport about to close.
            self.lane.wire, self.lane.transport = self, self.transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lane.on_lost(self, exc)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows


class TlsWire(Wire):
    """A TLS connection: the loop calls ``connection_made`` in the very call that ended the
    handshake, so that is where the handshake's time ends."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        lane = self.lane
        lane.tls_ns = perf_counter_ns() - lane.handshake_began_ns
        super().connection_made(transport)


class Lane:
    """A connection slot that carries one request at a time, reconnecting when needed."""

    __slots__ = (
        "_connected_ahead_ns",
        "_connecting",
        "_early_sent",
        "_early_socket",
        "attempt",
        "begun_ns",
        "busy",
        "connect_ns",
        "deadline_at_ns",
        "engine",
        "first_byte_ns",
        "handshake_began_ns",
        "intended_ns",
        "received",
        "request",
        "request_start_ns",
        "reused",
        "rows",
        "sent_ns",
        "timeout_ns",
        "tls_ns",
        "tls_resumed",
        "transport",
        "wire",
    )

    def __init__(self, engine: LaneOwner) -> None:
        self.engine = engine
        self.rows = engine.recorder.rows  # shared with the engine's recorder; appended to in place
        # The bytes of every request while they are all the same (set by the lane type);
        # None: compose() makes each one.
        self.request: bytes | None = None
        self.wire: Wire | None = None
        self.transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._early_socket: socket.socket | None = None  # its SYN already sent (start_connecting)
        # and its first request too: (when sent, connect time), both in ns; None: not sent
        self._early_sent: tuple[int, int] | None = None
        self.busy = False
        self.reused = False  # the request in flight is not the first on its connection
        self.intended_ns = MISSING
        self.begun_ns = 0  # when this request's attempt began (connect or send): for timeouts
        self.sent_ns = MISSING
        self.connect_ns = MISSING
        # How long the connection opened before the run took (open()), until its first
        # request's row carries it: a keep-alive run's connect times, charged to no latency.
        self._connected_ahead_ns = MISSING
        # The TLS handshake of the connection this request opened, and whether it resumed a
        # session (1) or not (0); MISSING on a reused or plain connection.
        self.tls_ns = MISSING
        self.tls_resumed = MISSING
        self.handshake_began_ns = 0  # when the TCP connection was up; 0: no handshake under way
        self.first_byte_ns = MISSING
        self.received = 0
        self.timeout_ns = engine.plan.timeout_ns  # this attempt's: shorter when a deadline is near
        self.attempt = 0  # 0: the request's first attempt; n: its n-th retry
        self.request_start_ns = 0  # when the request began (its retries keep it)
        self.deadline_at_ns = NO_DEADLINE  # when its deadline passes, across its attempts

    # --- what a lane type writes ----------------------------------------------------------

    async def connect(self) -> None:
        """Open a connection ready to carry requests (raises OSError on failure), set
        ``wire`` and ``transport``, and tell the engine (``count_connected``)."""
        raise NotImplementedError

    def compose(self) -> bytes:
        """The next request's bytes, when ``request`` does not hold them."""
        raise NotImplementedError

    def on_data(self, data: bytes) -> None:
        """Bytes from the connection: call :meth:`end_request` once an answer is complete."""
        raise NotImplementedError

    def answer_at_close(self) -> int | None:
        """The status of an answer whose end is the server's close, if that is how this one
        ends; None when a close before the end is a failure."""
        return None

    # --- connecting -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect ahead of the run (raises on failure; the first send then retries)."""
        began = perf_counter_ns()
        await self.connect()
        # A keep-alive run's connect and handshake times, each on the connection's first
        # request's row, neither inside its latency (the engine counts what the handshake
        # negotiated).
        tls_ns = self.tls_ns if self.tls_ns != MISSING else 0
        self._connected_ahead_ns = perf_counter_ns() - began - tls_ns

    def first_request(self) -> bytes | None:
        """What may be sent the moment the connection is up (None: a handshake comes first)."""
        return None

    def start_connecting(self, request: bytes | None) -> None:
        """Send this lane's SYN now, and its first request as soon as the kernel has the
        connection up, before the loop turns: the engine calls it for every lane in one pass
        when connections open with the load, so that they arrive together as wrk's do. With a
        create_connection per lane, one task step each, 1000 connections took 100-300 ms to
        send their first requests, and a server slow to accept a burst never saw one."""
        plan = self.engine.plan
        try:
            family = socket.AF_INET6 if ipaddress.ip_address(plan.host).version == 6 else socket.AF_INET
        except ValueError:
            return  # a name to resolve: the lane connects the usual way, at its first send
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        syn_ns = perf_counter_ns()
        if sock.connect_ex((plan.host, plan.port)) not in (0, errno.EINPROGRESS):
            sock.close()  # refused at once: the usual way counts it, at the first send
            return
        self._early_socket = sock
        if request is None:
            return
        sent_ns = perf_counter_ns()
        try:
            sent = sock.send(request)
        except (BlockingIOError, InterruptedError):
            return  # not up yet (on loopback it usually is): the usual send follows the connect
        except OSError as error:
            if error.errno == errno.ENOTCONN:
                return  # the same: the handshake is still under way
            # Refused or reset: this read its error off the socket, so the usual way must
            # connect anew to count it (kept, the socket would look connected and then close).
            sock.close()
            self._early_socket = None
            return
        if sent == len(request):
            self._early_sent = (sent_ns, sent_ns - syn_ns)  # it was up: the handshake is done
        else:  # a part went: the rest cannot follow in order through the usual path
            sock.close()
            self._early_socket = None

    async def open_wire(self) -> tuple[asyncio.Transport, Wire]:
        """A TCP connection to the plan's target, owned by this lane (over TLS if the plan's is)."""
        if self.engine.tls is not None:
            return await self._open_tls_wire(self.engine.tls)
        plan = self.engine.plan
        loop = asyncio.get_running_loop()
        sock, self._early_socket = self._early_socket, None
        if sock is None:
            transport, wire = await loop.create_connection(lambda: Wire(self), plan.host, plan.port)
        else:
            try:
                await _handshake_done(loop, sock)
                sent_early = self._early_sent is not None
                transport, wire = await loop.create_connection(lambda: Wire(self, sent_early=sent_early),
                                                               sock=sock)
            except BaseException:
                sock.close()
                raise
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio and uvloop both set it, but say so: one write per request
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.wire = wire
        self.transport = transport
        return transport, wire

    async def _open_tls_wire(self, tls: TlsClient) -> tuple[asyncio.Transport, Wire]:
        """TCP first, here, so that the handshake's clock starts when TCP is up; then the
        loop's TLS over that socket. A failure once TCP is up is the handshake's
        (:class:`~lab.engine.secure.HandshakeFailed`, counted with its reason)."""
        plan = self.engine.plan
        loop = asyncio.get_running_loop()
        sock, self._early_socket = self._early_socket, None
        try:
            if sock is None:
                sock = await _tcp_connect(loop, plan.host, plan.port)
            else:
                await _handshake_done(loop, sock)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handshake_began_ns = perf_counter_ns()
        try:
            transport, wire = await loop.create_connection(
                lambda: TlsWire(self), sock=sock, ssl=tls.context, server_hostname=tls.server_hostname,
                ssl_handshake_timeout=tls.timeout_s)
        except OSError as error:  # ssl.SSLError is one; so is the loop's handshake timeout
            sock.close()  # (the loop has detached it from its descriptor: this only lets go)
            raise tls.failed(error) from None
        except BaseException:
            sock.close()
            raise
        finally:
            self.handshake_began_ns = 0
        self.tls_resumed = tls.negotiated(transport)
        self.wire = wire
        self.transport = transport
        return transport, wire

    async def _connect_then_send(self) -> None:
        began = perf_counter_ns()
        try:
            await self.connect()
        except ConnectionRefusedError:
            self.engine.count_refused(began)
            self._connect_failed(began, ErrorKind.CONNECT_REFUSED)
        except OSError as error:
            # A lane type's own failure to connect may name its kind (a flood in the handshake).
            self._connect_failed(began, getattr(error, "kind", ErrorKind.CONNECT_ERROR))
        else:
            if self.connect_ns == MISSING and self._early_sent is None:  # (early: set at send)
                # The TLS handshake has its own column: the connect time is the rest.
                self.connect_ns = perf_counter_ns() - began - (self.tls_ns if self.tls_ns != MISSING else 0)
            if self.busy:
                self._write_after_connect()
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None

    def _connect_failed(self, began: int, error: ErrorKind) -> None:
        if not self.busy:
            return
        now = perf_counter_ns()
        self.connect_ns = now - began
        if self.sent_ns == MISSING:
            self.sent_ns = began  # never sent: the attempt's start stands in for the send
        self.finish(now, 0, error, connect_failed=True)

    # --- one request: the hot path ------------------------------------------------------------

    def send(self, intended_ns: int, attempt: int = 0) -> None:
        """Begin an attempt: a request's first (``attempt`` 0), or a retry, whose
        ``intended_ns`` is its request's start."""
        self.busy = True
        self.intended_ns = intended_ns
        self.attempt = attempt
        if attempt == 0 and self.engine.plan.retry is not None:
            self.engine.deposit_retry_token()
        if self.transport is None:
            self.sent_ns = MISSING
            self.connect_ns = MISSING  # this request's own connect, not the last one's
            self._connected_ahead_ns = MISSING  # that connection is gone unused
            self.tls_ns = self.tls_resumed = MISSING
            self.begun_ns = perf_counter_ns()
            if self._early_sent is not None:  # it went out with the SYN: its clock runs
                self.sent_ns, self.connect_ns = self._early_sent
                self.begun_ns = self.sent_ns
            self._watch_timeout()
            self._connecting = asyncio.ensure_future(self._connect_then_send())
            return
        self.connect_ns, self._connected_ahead_ns = self._connected_ahead_ns, MISSING
        self.reused = True
        self.sent_ns = self.begun_ns = perf_counter_ns()
        self._watch_timeout()
        self.transport.write(self.request or self.compose())

    def _watch_timeout(self) -> None:
        engine = self.engine
        policy = engine.plan.retry
        if policy is not None:
            # The request's start: a retry's intended time is it; a first attempt's is its
            # intended time, or in the closed loop now.
            self.request_start_ns = self.intended_ns if self.intended_ns != MISSING else self.begun_ns
            if policy.deadline_ns is not None:
                self.deadline_at_ns = self.request_start_ns + policy.deadline_ns
                self._limit_to_deadline()
                # A deadline may end this attempt before the one the timer watches.
                expiry = self.begun_ns + self.timeout_ns + 1
                if not engine.expiry_armed or expiry < engine.expiry_at_ns:
                    engine.arm_expiry(expiry)
                return
        if not engine.expiry_armed:
            engine.arm_expiry(self.begun_ns + self.timeout_ns + 1)

    def _limit_to_deadline(self) -> None:
        """This attempt's timeout: the plan's, or less when the request's deadline comes first."""
        self.timeout_ns = max(0, min(self.engine.plan.timeout_ns, self.deadline_at_ns - self.begun_ns))

    def _write_after_connect(self) -> None:
        """Send after a (re)connect; a retry keeps the first send's time: the wait is real."""
        if self._early_sent is not None:  # it went out with the SYN (start_connecting), and
            self._early_sent = None      # if its answer is in already, so is the next request
            return
        self.reused = False
        now = perf_counter_ns()
        if self.sent_ns == MISSING:
            self.sent_ns = now
        self.begun_ns = now
        if self.deadline_at_ns != NO_DEADLINE:
            self._limit_to_deadline()
        self.transport.write(self.request or self.compose())  # type: ignore[union-attr]

    def end_request(self, now: int, status: int, received: int, keep_alive: bool,
                    error: int | None = None, reset: bool = False, connect_failed: bool = False) -> None:
        """Where every request of a lane ends, answered or not: its one row (``error`` None: as
        its status says), then the closed loop's next request at once on this connection, or
        the lane is free (its connection let go of unless ``keep_alive`` lets it be reused).

        A lane type calls it for each complete answer at ``now`` (its first byte at
        ``first_byte_ns``); anything else ends through :meth:`finish`."""
        if error is None:
            error = NO_ERROR if status < 400 else BAD_STATUS
        if now - self.begun_ns > self.timeout_ns and error in (NO_ERROR, BAD_STATUS):
            # Complete, but after its timeout: the answer and the expiry timer were ready in
            # the same turn of the loop, and the answer was read first. A timeout all the same.
            self.engine.errors += 1
            status, keep_alive, reset = 0, False, True
            error = int(ErrorKind.DEADLINE if now >= self.deadline_at_ns else ErrorKind.TIMEOUT)
        # Packed here rather than by a call to Recorder.add: that call alone added ~5 % to the
        # instructions of a lane's whole path per request (callgrind).
        self.rows += ROW.pack(self.intended_ns, self.sent_ns, self.connect_ns, self.first_byte_ns, now,
                              status, received, error, self.attempt)
        self.first_byte_ns = MISSING
        if self.tls_ns != MISSING:  # the first request of a new TLS connection
            self.engine.recorder.add_tls(self.tls_ns, self.tls_resumed)
            self.tls_ns = self.tls_resumed = MISSING
        self.received = 0
        engine = self.engine
        if error != NO_ERROR and engine.plan.retry is not None:
            # Its retry, if the policy gives it one, is the engine's to schedule (after a
            # backoff, on whichever lane is free); this lane ends its attempt as any other.
            engine.plan_retry(self, now, error, status)
        if keep_alive and now < engine.continue_until_ns and engine.started < engine.budget:
            # Closed loop, the common case: the next request goes out at once on this
            # connection, without the general bookkeeping of send() and lane_free().
            engine.started += 1
            self.connect_ns = MISSING
            self.reused = True
            self.sent_ns = self.begun_ns = perf_counter_ns()
            self.transport.write(self.request or self.compose())  # type: ignore[union-attr]
            return
        self.busy = False
        if not keep_alive or not engine.keepalive:
            self.drop_connection(reset=reset)
        engine.lane_free(self, now, connect_failed)

    def finish(self, done_ns: int, status: int, error: int, *, reset: bool = False,
               connect_failed: bool = False) -> None:
        """End a request other than by a complete answer on a live connection (a failure, or an
        answer that the server's close ended): counted, and its connection let go of."""
        if error and error != BAD_STATUS:
            self.engine.errors += 1
        self.end_request(done_ns, status, self.received, False, error, reset, connect_failed)

    # --- the connection's end -----------------------------------------------------------------

    def on_lost(self, wire: Wire, exc: Exception | None) -> None:
        if wire is not self.wire:
            return  # a connection this lane already let go of
        if self.engine.tls is not None and wire.transport is not None:
            self.engine.tls.keep_session(wire.transport)
        self.wire = None
        self.transport = None
        if not self.busy or self.sent_ns == MISSING:
            return
        now = perf_counter_ns()
        status = self.answer_at_close() if exc is None else None
        if status is not None:
            self.finish(now, status, BAD_STATUS if status >= 400 else NO_ERROR)
            return
        if self._may_retry(exc):
            self.begun_ns = now
            if self.deadline_at_ns != NO_DEADLINE:
                self._limit_to_deadline()
            self.connect_ns = MISSING
            self._connecting = asyncio.ensure_future(self._connect_then_send())
            return
        error = ErrorKind.CLOSED_BY_SERVER if exc is None else _error_kind(exc)
        self.finish(now, 0, error)

    def _may_retry(self, exc: Exception | None) -> bool:
        """A reused connection that died before any answer byte: the server closed it idle.

        The retry goes out on a new connection (``reused`` false), so it is never retried again.
        """
        stale = exc is None or isinstance(exc, (ConnectionResetError, BrokenPipeError))
        return (stale and self.reused and not self.received
                and self.engine.plan.method in IDEMPOTENT and not self.engine.stopped_by_owner)

    def expire(self, now: int) -> None:
        """No complete answer within the timeout: count it and drop the connection. A TLS
        handshake still under way is a handshake that failed (it timed out)."""
        error = ErrorKind.DEADLINE if now >= self.deadline_at_ns else ErrorKind.TIMEOUT
        if self.handshake_began_ns and self.engine.tls is not None:
            self.engine.tls.timed_out()
            error = ErrorKind.TLS_FAILED
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
            if self.sent_ns == MISSING:
                self.sent_ns = self.begun_ns
        self.finish(now, 0, error, reset=True)

    def drop_connection(self, *, reset: bool = False) -> None:
        transport = self.transport
        self.wire = None
        self.transport = None
        if transport is None:
            return
        if self.engine.tls is not None:
            self.engine.tls.keep_session(transport)
        if reset:
            # A connection in an unknown state (timed out, garbled) is reset rather than
            # closed: a late answer on it must not be read as the next request's.
            transport.abort()
        else:
            transport.close()

    def abandon(self) -> None:
        """Stop without recording (the run was stopped by its owner, or it is over)."""
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        if self._early_socket is not None:  # a lane the run never got to
            self._early_socket.close()
            self._early_socket = None
        self._early_sent = None
        self.busy = False
        self.drop_connection(reset=True)


async def _handshake_done(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Until a connect started with connect_ex is up (raises its error if it failed). Not
    sock_connect: that connects again, and a socket already up answers EISCONN."""
    try:
        sock.getpeername()
        return  # up already: on loopback the kernel usually finishes within connect_ex
    except OSError:
        pass
    writable = loop.create_future()
    loop.add_writer(sock.fileno(), lambda: None if writable.done() else writable.set_result(None))
    try:
        await writable
    finally:
        loop.remove_writer(sock.fileno())
    failure = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if failure:
        raise OSError(failure, os.strerror(failure))  # ConnectionRefusedError for ECONNREFUSED


async def _tcp_connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected TCP socket (raises OSError, ConnectionRefusedError among them)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        address: tuple[Any, ...] = (host, port)
    except ValueError:  # a name: resolved as the loop would for create_connection
        family, _, _, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        failure = sock.connect_ex(address)
        if failure not in (0, errno.EINPROGRESS):
            raise OSError(failure, os.strerror(failure))
        await _handshake_done(loop, sock)
    except BaseException:
        sock.close()
        raise
    return sock


def _error_kind(exc: BaseException) -> ErrorKind:
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ErrorKind.RESET
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT
    return ErrorKind.OTHER
