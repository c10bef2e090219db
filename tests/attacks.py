"""Hostile clients, each bounded in bytes and time, run as a process of their own.

``python tests/attacks.py NAME PORT [ARGUMENT]`` runs one attack against 127.0.0.1:PORT and
prints one JSON object with what it saw. The attack tests start it niced and pinned beside
a polite client, so the attacker's own CPU use does not count against the server.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

MIB = 1024 * 1024
ATTACK_SECONDS = 2.0
TCP_ESTABLISHED = 1


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def read_body(sock: socket.socket) -> int:
    """Read one Content-Length answer to its end; returns the body's length."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the head ended")
        head += chunk
    head, _, received = head.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    got = len(received)
    buffer = bytearray(4 * MIB)  # one buffer for every read: no allocation per chunk
    while got < length:
        count = sock.recv_into(buffer)
        if not count:
            raise ConnectionError(f"closed after {got} of {length} body bytes")
        got += count
    return got


def large_bodies(port: int, size: str) -> dict[str, Any]:
    """Fetch ``size``-byte answers, each read whole, for ATTACK_SECONDS (at least four)."""
    started, fetched = time.monotonic(), 0
    while fetched < 4 or time.monotonic() - started < ATTACK_SECONDS:
        with connect(port, timeout=30) as sock:
            sock.sendall(get(f"/bytes/{size}"))
            if read_body(sock) != int(size):
                raise AssertionError("short body")
        fetched += 1
    return {"fetched": fetched}


def endless_header(port: int, where: str) -> dict[str, Any]:
    """Heads that never end (in a header's ``value`` or its ``name``), again and again."""
    start = b"GET /fast HTTP/1.1\r\nHost: t\r\n" + (b"X-Long: " if where == "value" else b"")
    began, most_sent, answers = time.monotonic(), 0, set()
    while time.monotonic() - began < ATTACK_SECONDS:
        sent, answer = _send_endless(port, start)
        most_sent = max(most_sent, sent)
        answers.add(answer)
    return {"most_sent": most_sent, "answers": sorted(answers)}


def _send_endless(port: int, start: bytes) -> tuple[int, str]:
    block = b"a" * 16 * 1024
    sent = 0
    with connect(port) as sock:
        sock.sendall(start)
        try:
            while sent < 8 * MIB:
                answer = _answer_so_far(sock)
                if answer is not None:
                    return sent, answer
                sock.sendall(block)
                sent += len(block)
                time.sleep(0.002)  # a steady attacker, so `sent` is about what the server read
        except (BrokenPipeError, ConnectionResetError):
            return sent, "reset"
    return sent, "none"


def _answer_so_far(sock: socket.socket) -> str | None:
    """The status line the server sent, "closed", or None while it has said nothing."""
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return None
    finally:
        sock.setblocking(True)
    return data.split(b"\r\n", 1)[0].decode() if data else "closed"


def trickled_body(port: int, gap_seconds: str) -> dict[str, Any]:
    """A POST announcing 1 MiB, whose bytes come one at a time, ``gap_seconds`` apart."""
    gap = float(gap_seconds)
    with connect(port) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\nx")
        started = time.monotonic()
        next_byte = started + gap
        sock.settimeout(0.1)
        answer: bytes | None = None
        while answer is None and time.monotonic() - started < 15:
            try:
                answer = sock.recv(65536)
            except TimeoutError:
                if time.monotonic() >= next_byte:
                    sock.sendall(b"x")
                    next_byte += gap
        ended_after = time.monotonic() - started
    status = answer.split(b"\r\n", 1)[0].decode() if answer else "none"
    return {"ended_after": ended_after, "answer": status}


def slow_reader(port: int, size: str) -> dict[str, Any]:
    """Ask for a large answer and read none of it; report when the server dropped us."""
    with connect(port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(get(f"/bytes/{size}"))
        started = time.monotonic()
        while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() - started < 15:
            time.sleep(0.05)
        return {"dropped_after": time.monotonic() - started,
                "still_established": tcp_state(sock) == TCP_ESTABLISHED}


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of a socket (tcpi_state, the first byte of TCP_INFO)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


ATTACKS: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "large-bodies": large_bodies,
    "endless-header": endless_header,
    "trickled-body": trickled_body,
    "slow-reader": slow_reader,
}

if __name__ == "__main__":
    name, port, argument = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(ATTACKS[name](port, argument)))
