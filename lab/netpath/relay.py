"""The relay: a process of its own that moves IP packets between the two TUN devices of a path,
holding each one back as the path says (delay, jitter, loss, rate, reordering).

    python -m lab.netpath.relay --namespace labnp-123-0 --client-device labp0c \
        --server-device labp0s --path '{"delay_ms": 20.0, ...}'
    python -m lab.netpath.relay --namespace labnp-123-0 --client-device labp0c \
        --target-device labp0t --translate '{"client": "198.19.0.1", ...}' --path '{...}'

It opens the client's device in the namespace it starts in, then enters the server's namespace
and opens the other there; from then on it only reads and writes two descriptors. It prints
one JSON line when ready (or why not), answers "stats" on stdin with a JSON line, takes a new
path as a JSON line ({"path": {...}}) without dropping what is in flight, and exits on SIGTERM.
With ``--target-device`` it puts the path in front of a server on this namespace's loopback
instead (lab/netpath/nat.py): both devices stay here, every packet's addresses are rewritten,
and the relay enters the namespace only so that it is found and removed with it.

Why a process and plain ``select``: in a process of its own it shares no GIL with the kernel,
the server or the generator; ``select`` takes a timeout in microseconds where ``epoll`` in
Python rounds up to the next millisecond, which would add up to 1 ms to every delayed packet.
Packets wait in one heap ordered by the time they are due.

Who cleans up if the parent dies (SIGKILL, a crashed kernel): the relay. Its stdin is a pipe
from the parent, so the parent's death is an end of file, and it also polls getppid() every
100 ms (a forked grandchild could hold the pipe open). PR_SET_PDEATHSIG is not used: it fires
when the *thread* that started the relay ends, which in a notebook need not be the kernel's
death. On the parent's death the relay removes the namespace's name and exits; its devices go
with its descriptors. What survives even that (the machine losing power does not need it:
/run is a tmpfs) is removed at the next start by :func:`lab.netpath.system.remove_stale`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import heapq
import itertools
import json
import os
import random
import select
import signal
import sys
import time
from typing import Any

from lab.netpath.nat import Translation, translations
from lab.netpath.spec import Path
from lab.netpath.system import delete_namespace, enter_namespace, open_tun
from lab.options import from_dict
from lab.units import NS_PER_MS

READ_BATCH = 64  # packets read from one device before the other gets its turn
PACKET_BYTES = 65_535
PARENT_CHECK_NS = 100_000_000
PR_SET_TIMERSLACK = 29  # <linux/prctl.h>


class Direction:
    """One way through the path: its rate limit's queue, its loss state, its counters."""

    def __init__(self, name: str, out_fd: int, path: Path, rng: random.Random,
                 translate: Translation | None = None) -> None:
        self.name, self.out_fd, self.rng = name, out_fd, rng
        self.translate = translate  # in front of a local server: its addresses, rewritten
        self.link_free_at = 0  # when the rate limit finishes sending what it has taken
        self.in_queue: collections.deque[int] = collections.deque()  # their finish times
        self.last_due = 0  # packets that are not reordered leave in the order they came
        self.in_burst = False  # the Gilbert model's state: inside a run of losses
        self.counts = {"packets": 0, "bytes": 0, "lost": 0, "queue_dropped": 0, "reordered": 0,
                       "refused": 0}  # refused: not for the one port a translated path carries
        self.configure(path)

    def configure(self, path: Path) -> None:
        self.path = path
        self.delay_ns = int(path.delay_ms * NS_PER_MS)
        self.jitter_ns = int(path.jitter_ms * NS_PER_MS)
        self.loss = path.loss_percent / 100
        self.reorder = path.reorder_percent / 100
        self.ns_per_byte = 8_000 / path.rate_mbit if path.rate_mbit else 0.0
        # Gilbert model with mean burst length B and loss L: leave a burst with r = 1/B and
        # enter one with p = r*L/(1-L), so that the share of time in bursts, p/(p+r), is L.
        self.leave_burst = 1 / path.loss_burst_packets
        self.enter_burst = (self.leave_burst * self.loss / (1 - self.loss)) if self.loss < 1 else 1.0

    def lost(self) -> bool:
        if self.loss <= 0:
            return False
        if self.path.loss_burst_packets <= 1:
            return self.rng.random() < self.loss
        if self.in_burst:
            self.in_burst = self.rng.random() >= self.leave_burst
        else:
            self.in_burst = self.rng.random() < self.enter_burst
        return self.in_burst

    def due(self, size: int, now: int) -> int | None:
        """When a packet that arrived ``now`` leaves the path, or None if the path drops it."""
        self.counts["packets"] += 1
        self.counts["bytes"] += size
        if self.lost():
            self.counts["lost"] += 1
            return None
        finish = now
        if self.ns_per_byte:
            queue = self.in_queue
            while queue and queue[0] <= now:
                queue.popleft()
            if len(queue) >= self.path.queue_packets:
                self.counts["queue_dropped"] += 1
                return None
            finish = max(now, self.link_free_at) + int(size * self.ns_per_byte)
            self.link_free_at = finish
            queue.append(finish)
        if self.reorder and self.rng.random() < self.reorder:
            self.counts["reordered"] += 1
            return finish  # skips the delay, overtaking the packets before it
        delay = self.delay_ns
        if self.jitter_ns:
            delay = max(0, delay + self.rng.randint(-self.jitter_ns, self.jitter_ns))
        due = max(finish + delay, self.last_due)
        self.last_due = due
        return due


class Relay:
    def __init__(self, client_fd: int, server_fd: int, path: Path, namespace: str,
                 translate: tuple[Translation, Translation] | None = None) -> None:
        rng = random.Random()
        inward, outward = translate if translate is not None else (None, None)
        # packets read from the client's device go out of the server's, and back
        self.directions = {client_fd: Direction("to_server", server_fd, path, rng, inward),
                           server_fd: Direction("to_client", client_fd, path, rng, outward)}
        self.namespace = namespace
        self.heap: list[tuple[int, int, int, bytes]] = []
        self.order = itertools.count()
        self.parent = os.getppid()
        self.running = True
        self.stdin_buffer = b""
        self.write_errors = 0
        self.started = time.monotonic_ns()

    def run(self) -> None:
        fds = [*self.directions, sys.stdin.fileno()]
        next_parent_check = time.monotonic_ns() + PARENT_CHECK_NS
        while self.running:
            now = self.send_due()
            wake = min(self.heap[0][0], next_parent_check) if self.heap else next_parent_check
            try:
                readable, _, _ = select.select(fds, [], [], max(0, wake - now) / 1e9)
            except InterruptedError:
                continue
            for fd in readable:
                if fd in self.directions:
                    self.take(fd)
                else:
                    self.command()
            if time.monotonic_ns() >= next_parent_check:
                next_parent_check = time.monotonic_ns() + PARENT_CHECK_NS
                if os.getppid() != self.parent:
                    self.parent_gone()

    def take(self, fd: int) -> None:
        direction = self.directions[fd]
        for _ in range(READ_BATCH):
            try:
                packet = os.read(fd, PACKET_BYTES)
            except BlockingIOError:
                return
            if direction.translate is not None:
                translated = direction.translate(packet)
                if translated is None:
                    direction.counts["refused"] += 1
                    continue
                packet = translated
            now = time.monotonic_ns()
            due = direction.due(len(packet), now)
            if due is None:
                continue
            if due <= now and not self.heap:
                self.write(direction.out_fd, packet)
            else:
                heapq.heappush(self.heap, (due, next(self.order), direction.out_fd, packet))

    def send_due(self) -> int:
        heap = self.heap
        now = time.monotonic_ns()
        while heap and heap[0][0] <= now:
            _, _, fd, packet = heapq.heappop(heap)
            self.write(fd, packet)
        return now

    def write(self, fd: int, packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            self.write_errors += 1  # a device going down as the path stops: nothing to do

    def command(self) -> None:
        data = os.read(sys.stdin.fileno(), 65_536)
        if not data:
            self.parent_gone()
            return
        self.stdin_buffer += data
        while b"\n" in self.stdin_buffer:
            line, self.stdin_buffer = self.stdin_buffer.split(b"\n", 1)
            message = json.loads(line) if line.strip() else {}
            if "path" in message:
                path = from_dict(Path, message["path"])
                for direction in self.directions.values():
                    direction.configure(path)
            reply(self.stats())

    def stats(self) -> dict[str, Any]:
        return {"seconds": (time.monotonic_ns() - self.started) / 1e9,
                "in_flight": len(self.heap), "write_errors": self.write_errors,
                **{d.name: dict(d.counts) for d in self.directions.values()}}

    def parent_gone(self) -> None:
        delete_namespace(self.namespace)
        self.running = False


def reply(message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def disable_ipv6(device: str) -> None:
    """No IPv6 on the path's devices: the kernel's router solicitations would be relayed too."""
    with contextlib.suppress(OSError), open(
            f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6", "w") as setting:
        setting.write("1")


def stop(*_: object) -> None:
    raise SystemExit(0)  # out of select at once; the devices go with the descriptors


def tight_timers() -> None:
    """Ask for wake-ups on time: a normal process's timer slack (50 us) would be added to
    every delayed packet's departure."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.netpath.relay")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--client-device", required=True)
    devices = parser.add_mutually_exclusive_group(required=True)
    devices.add_argument("--server-device", help="the server's device, made in the namespace")
    devices.add_argument("--target-device", help="a device here, towards a local server")
    parser.add_argument("--translate", default=None,
                        help="with --target-device: the addresses, as a JSON object of "
                        "lab.netpath.nat.translations' arguments")
    parser.add_argument("--path", required=True, help="the Path as a JSON object")
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us in order
    signal.signal(signal.SIGTERM, stop)
    tight_timers()
    try:
        path = from_dict(Path, json.loads(arguments.path))
        client_fd = open_tun(arguments.client_device)
        disable_ipv6(arguments.client_device)
        translate = None
        if arguments.target_device is not None:  # both devices here, then into the namespace
            translate = translations(**json.loads(arguments.translate))
            server_fd = open_tun(arguments.target_device)
            disable_ipv6(arguments.target_device)
            enter_namespace(arguments.namespace)  # where `ip netns pids` finds a stale relay
        else:
            enter_namespace(arguments.namespace)  # the rest of the relay's life is spent there
            server_fd = open_tun(arguments.server_device)
            disable_ipv6(arguments.server_device)
    except Exception as error:  # any failure is one line for the parent
        reply({"error": f"{type(error).__name__}: {error}"})
        return 1
    relay = Relay(client_fd, server_fd, path, arguments.namespace, translate)
    reply({"ready": True, "pid": os.getpid()})
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
