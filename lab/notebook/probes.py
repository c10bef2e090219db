"""Raw-socket probes for the TCP lessons: what the load generator deliberately keeps out of view.

The load generator sends each request in one write with TCP_NODELAY, reads whatever arrives
and closes cleanly, because its job is to measure the server. The TCP notebooks need the
opposite: a client that does one thing at a time and reports what the kernel did --
whether it acknowledged at once (TCP_QUICKACK), whether the connection ended with FIN or RST,
and which side was left holding TIME_WAIT. Everything here is blocking, bounded by a count
and a timeout, and refuses targets outside the loopback interface (``unread_close_probe``
talks only to a listener of its own on 127.0.0.1).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lab.addresses import require_loopback
from lab.engine.spec import Target, parse_target
from lab.errors import ConfigError, LabError
from lab.measure.samples import ErrorKind, empty
from lab.notebook.sockdiag import TcpState, tcp_sockets

READ_BYTES = 256 * 1024


# The notebooks' own small clients (here, in accept.py and in tail.py) share these three.

def loopback_target(url: str) -> Target:
    """``url`` parsed, refused unless it is on this machine (the probes never talk elsewhere)."""
    target = parse_target(url)
    require_loopback(target.host, opt_in=None)
    return target


def get_request(target: Target, *, close: bool = False, path: str | None = None) -> bytes:
    """A GET for ``path`` (the target's own by default), optionally asking to close after it."""
    connection = "Connection: close\r\n" if close else ""
    return (f"GET {path or target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n{connection}\r\n"
            .encode("latin-1"))


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise LabError("the notebooks' probes read Content-Length answers only; this one had none")


# --- one request after another, optionally with TCP_QUICKACK --------------------------------

def sequential_requests(url: str, count: int, *, quickack: bool = False,
                        timeout_seconds: float = 5.0) -> np.ndarray:
    """Send ``count`` GETs one after another on one keep-alive connection; one sample row each.

    With ``quickack`` the client sets TCP_QUICKACK after every send and every receive, so it
    acknowledges each arriving segment at once instead of delaying the ACK. Linux does not keep
    the option (the next delayed-ACK decision may switch back), hence the re-arming.
    The rows use the load generator's format (lab.measure.samples), ready for records and plots.
    """
    if count < 1:
        raise ConfigError("count", f"must be at least 1, got {count}")
    target = loopback_target(url)
    request = get_request(target)
    samples = empty(count)
    began = time.perf_counter_ns()
    with socket.create_connection((target.host, target.port), timeout=timeout_seconds) as sock:
        samples["connect_ns"][0] = time.perf_counter_ns() - began
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the request is one write
        for index in range(count):
            _one_request(sock, request, samples[index : index + 1], quickack)
    return samples


def _one_request(sock: socket.socket, request: bytes, row: np.ndarray, quickack: bool) -> None:
    def rearm() -> None:
        if quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    row["sent_ns"] = time.perf_counter_ns()
    sock.sendall(request)
    rearm()
    received = b""
    while b"\r\n\r\n" not in received:
        data = _receive(sock)
        if not received:
            row["first_byte_ns"] = time.perf_counter_ns()
        received += data
        rearm()
    head, _, body = received.partition(b"\r\n\r\n")
    length = content_length(head)
    got = len(body)
    while got < length:
        got += len(_receive(sock))
        rearm()
    row["done_ns"] = time.perf_counter_ns()
    row["status"] = int(head.split(b" ", 2)[1])
    row["response_bytes"] = len(head) + 4 + got
    row["error"] = ErrorKind.NONE


def _receive(sock: socket.socket) -> bytes:
    data = sock.recv(READ_BYTES)
    if not data:
        raise ConnectionError("the server closed the connection in the middle of an answer")
    return data


# --- how a connection ends: FIN or RST ------------------------------------------------------

@dataclass(frozen=True)
class CloseProbe:
    """What one ``Connection: close`` request saw at the end of its connection."""

    ending: Literal["fin", "rst", "timeout"]  # orderly close, reset, or neither in time
    received_bytes: int  # headers and body, as far as they arrived
    expected_bytes: int  # headers plus Content-Length: what a complete answer has

    @property
    def complete(self) -> bool:
        return self.received_bytes >= self.expected_bytes


def close_probe(url: str, *, read_delay_seconds: float = 0.0, receive_buffer_bytes: int | None = None,
                timeout_seconds: float = 5.0) -> CloseProbe:
    """One request with ``Connection: close``; read to the end and report how the end came.

    ``read_delay_seconds`` makes a slow reader: the client waits before its first read, so
    the answer sits in the kernel's buffers when the server closes. ``receive_buffer_bytes``
    fixes the client's SO_RCVBUF (no autotuning): without it Linux may grow the receive
    buffer to several MB, take the whole answer in before the server closes, and a reset
    then cuts nothing.
    """
    target = loopback_target(url)
    received = b""
    ending: Literal["fin", "rst", "timeout"]
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if receive_buffer_bytes is not None:
            # Before connect, so the window advertised in the handshake matches it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        sock.settimeout(timeout_seconds)
        sock.connect((target.host, target.port))
        sock.sendall(get_request(target, close=True))
        time.sleep(read_delay_seconds)
        try:
            while data := sock.recv(READ_BYTES):
                received += data
            ending = "fin"  # recv() returned b"": the peer's FIN, after all its data
        except ConnectionResetError:
            ending = "rst"
        except TimeoutError:
            ending = "timeout"
    head, separator, _ = received.partition(b"\r\n\r\n")
    expected = len(head) + 4 + content_length(head) if separator else 0
    return CloseProbe(ending, len(received), expected)


# --- close() with unread data: RST whatever SO_LINGER says -----------------------------------

@dataclass(frozen=True)
class UnreadCloseProbe:
    """What a client saw after the server closed a socket, with or without unread bytes in it."""

    ending: Literal["fin", "rst", "timeout"]
    answer_bytes: int  # of the server's answer, how many the client read before the ending


def unread_close_probe(*, linger_seconds: int | None, read_everything: bool,
                       extra_bytes: int = 100, timeout_seconds: float = 5.0) -> UnreadCloseProbe:
    """A listener of our own on 127.0.0.1: the client sends a request plus ``extra_bytes`` more
    (a pipelined request, a body the server refused); the server answers and closes, having
    read everything or only the request, with ``SO_LINGER`` off (None) or set (seconds).

    RFC 9293 section 3.6 and Linux agree: closing a socket whose receive queue still holds
    data aborts the connection with an RST, whatever SO_LINGER says -- the reason servers
    read and drop the peer's remaining bytes for a while (a "lingering close") before closing.
    """
    request = b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname()[:2], timeout=timeout_seconds)
        with client:
            client.sendall(request + b"x" * extra_bytes)
            accepted, _ = listener.accept()
            accepted.settimeout(timeout_seconds)
            _read_exactly(accepted, len(request) + (extra_bytes if read_everything else 0))
            if linger_seconds is not None:
                accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, linger_seconds))
            accepted.sendall(answer)
            accepted.close()
            return _read_to_end(client)


def _read_exactly(sock: socket.socket, count: int) -> None:
    got = 0
    while got < count:
        data = sock.recv(count - got)  # no more than asked: the rest must stay unread
        if not data:
            raise ConnectionError("the client closed before sending everything")
        got += len(data)


def _read_to_end(sock: socket.socket) -> UnreadCloseProbe:
    received = b""
    try:
        while data := sock.recv(READ_BYTES):
            received += data
        return UnreadCloseProbe("fin", len(received))
    except ConnectionResetError:
        return UnreadCloseProbe("rst", len(received))
    except TimeoutError:
        return UnreadCloseProbe("timeout", len(received))


# --- TIME_WAIT, counted through sock_diag ---------------------------------------------------

@dataclass(frozen=True)
class TimeWaitCount:
    """TIME_WAIT sockets of the connections to one server port, by the side that holds them."""

    server_side: int  # local port is the server's: the server closed first
    client_side: int  # remote port is the server's: the client closed first

    @property
    def total(self) -> int:
        return self.server_side + self.client_side


def count_time_wait(port: int) -> TimeWaitCount:
    """Count TIME_WAIT sockets whose local or remote port is ``port`` (IPv4 and IPv6).

    The kernel lists only TIME_WAIT sockets, in binary (lab.notebook.sockdiag): no
    /proc/net/tcp text to format and parse on the cores a run is measuring. The count is of
    this network namespace.
    """
    server_side = client_side = 0
    for entry in tcp_sockets(TcpState.TIME_WAIT):
        server_side += entry.local_port == port
        client_side += entry.remote_port == port
    return TimeWaitCount(server_side, client_side)


__all__ = ["CloseProbe", "TimeWaitCount", "UnreadCloseProbe", "close_probe", "count_time_wait",
           "sequential_requests", "unread_close_probe"]
