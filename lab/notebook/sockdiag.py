"""TCP sockets as the kernel lists them, through netlink's sock_diag (what ``ss`` uses).

Why not /proc/net/tcp: the kernel formats one text line per socket of the namespace and the
reader parses them all, on the very cores a run is measuring; with tens of thousands of
TIME_WAIT sockets that is milliseconds of CPU per look. A sock_diag dump asks the kernel for
the sockets in some states only and gets fixed-size binary records back, and no process is
started (``ss`` would be one per look). It needs no privilege.

For a listening socket the kernel reports the accept queue: ``receive_queue`` is the number of
connections completed but not yet accepted, ``send_queue`` the queue's limit (the backlog as
capped by ``net.core.somaxconn``), as ``ss -lnt`` prints them in Recv-Q and Send-Q.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from enum import IntEnum

from lab.errors import LabError


class TcpState(IntEnum):
    """The kernel's TCP states (include/net/tcp_states.h)."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11


@dataclass(frozen=True)
class TcpSocketEntry:
    local_port: int
    remote_port: int
    state: TcpState
    receive_queue: int  # bytes not yet read; for a listener, connections not yet accepted
    send_queue: int  # bytes not yet acknowledged; for a listener, the accept queue's limit


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NETLINK_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
# inet_diag_req_v2: family, protocol, extensions, pad, state bitmask, then a zeroed socket id
# (ports, addresses, interface, cookie: 48 bytes) -- a dump matches on the states only.
DIAG_REQUEST = struct.Struct("=BBBBI48x")
RECEIVE_BYTES = 1 << 16


def tcp_sockets(*states: TcpState) -> list[TcpSocketEntry]:
    """Every IPv4 and IPv6 TCP socket of this network namespace in one of ``states``."""
    mask = 0
    for state in states:
        mask |= 1 << state
    entries: list[TcpSocketEntry] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        entries.extend(_dump(family, mask))
    return entries


def _dump(family: int, state_mask: int) -> list[TcpSocketEntry]:
    request = DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, state_mask)
    header = NETLINK_HEADER.pack(NETLINK_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                 NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    entries: list[TcpSocketEntry] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as link:
        link.sendall(header + request)
        while True:
            data = link.recv(RECEIVE_BYTES)
            offset = 0
            while offset + NETLINK_HEADER.size <= len(data):
                length, kind, _, _, _ = NETLINK_HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return entries
                if kind == NLMSG_ERROR:
                    raise LabError("sock_diag: the kernel refused the socket dump")
                entries.append(_entry(data, offset + NETLINK_HEADER.size))
                offset += (length + 3) & ~3  # messages are 4-byte aligned
            if not data:
                return entries


def _entry(data: bytes, offset: int) -> TcpSocketEntry:
    (_, state, _, _, local_port, remote_port,
     _, receive_queue, send_queue, _, _) = _unpack_message(data, offset)
    return TcpSocketEntry(local_port, remote_port, TcpState(state), receive_queue, send_queue)


def _unpack_message(data: bytes, offset: int) -> tuple[int, ...]:
    # inet_diag_msg: family, state, timer, retransmits; the socket id (ports in network
    # order, then addresses, interface and cookie: 48 bytes); expires, receive queue, send
    # queue, uid, inode. The ports are big-endian and the rest native, hence three unpacks.
    family, state, timer, retransmits = struct.unpack_from("=BBBB", data, offset)
    local_port, remote_port = struct.unpack_from("!HH", data, offset + 4)
    expires, receive_queue, send_queue, uid, inode = struct.unpack_from("=IIIII", data, offset + 52)
    return (family, state, timer, retransmits, local_port, remote_port,
            expires, receive_queue, send_queue, uid, inode)


@dataclass(frozen=True)
class ListenQueue:
    """A listener's accept queue: connections waiting for accept(), and the queue's limit."""

    waiting: int
    limit: int


def listen_queue(port: int) -> ListenQueue:
    """The accept queue of the socket listening on ``port`` (the ``ss -lnt`` Recv-Q/Send-Q)."""
    for entry in tcp_sockets(TcpState.LISTEN):
        if entry.local_port == port:
            return ListenQueue(entry.receive_queue, entry.send_queue)
    raise LabError(f"nothing listens on port {port}")


__all__ = ["ListenQueue", "TcpSocketEntry", "TcpState", "listen_queue", "tcp_sockets"]
