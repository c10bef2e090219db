"""The generator's own cost per request on its lane path, with no sockets: a noise-light measure.

    .venv/bin/python benchmarks/lane_path.py [--requests 100000] [--repeats 9]

One lane of a closed loop (lab/engine/lane.py) is fed answers as uvloop would hand them to
it; each answer ends its request (one sample row) and the closed loop's continuation writes
the next request to a transport that only counts. The time per request is the minimum over
``--repeats`` runs (interference only ever adds time). Variants:

- ``http-repeat``: the same answer again (a steady server within one second): one compare;
- ``http-parsed``: answers alternating in length, so llhttp reads every one;
- ``ws-echo``: a WebSocket echo of the message sent.

Beside them, the floor any llhttp-based client has: httptools fed the same answers, with one
callback that writes the next request. Pin it (``taskset -c 1``) and compare two trees by
running it with each on ``PYTHONPATH``; requests/s against a real server move by 10-20 % on a
shared machine, this by a few.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import httptools
from counting_transport import CountingTransport
from websockets.frames import Frame, Opcode

from lab.engine.core import make_engine
from lab.engine.plan import EnginePlan, WebSocketPlan
from lab.engine.response import response_parser
from lab.engine.worker import lane_type_for

VARIANTS = ("http-repeat", "http-parsed", "ws-echo", "llhttp-floor")
REQUEST = b"GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
ANSWER = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 07 Dec 2026 16:45:00 GMT\r\n"
          b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nOK")
OTHER_ANSWER = ANSWER.replace(b"Server: nginx", b"Server: nginx/1")
MESSAGE = b"x" * 16


class Floor:
    """llhttp with one callback that writes the next request: what any such client pays."""

    def __init__(self, transport: CountingTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpResponseParser(self)

    def on_message_complete(self) -> None:
        self.transport.write(REQUEST)


def answers_for(variant: str, count: int) -> list[bytes]:
    if variant == "ws-echo":
        return [Frame(Opcode.TEXT, MESSAGE).serialize(mask=False, extensions=[])] * count
    if variant == "http-repeat":
        return [ANSWER] * count
    return [ANSWER if index % 2 == 0 else OTHER_ANSWER for index in range(count)]


def nanoseconds_per_request(variant: str, count: int) -> float:
    transport = CountingTransport()
    answers = answers_for(variant, count)
    if variant == "llhttp-floor":
        feed = Floor(transport).parser.feed_data
    else:
        websocket = (WebSocketPlan(uri="ws://127.0.0.1:1/ws/echo", payload=MESSAGE, text=True,
                                   compression=False) if variant == "ws-echo" else None)
        plan = EnginePlan(host="127.0.0.1", port=1, requests=() if websocket else (REQUEST,),
                          method="GET", mode="closed", connections=1, rate=None, offset_ns=0,
                          duration_ns=10**15, max_requests=None, timeout_ns=10**12, keepalive=True,
                          websocket=websocket)
        engine = make_engine(plan, lane_type_for(plan))
        lane: Any = engine.lanes[0]
        # The state connect() leaves, without a socket.
        lane.transport = transport
        if websocket is not None:
            lane.request = Frame(Opcode.TEXT, MESSAGE).serialize(mask=True, extensions=[])
            lane.echo = answers[0]
        else:
            lane.parser = response_parser(lane, method="GET")
        engine.continue_until_ns = sys.maxsize
        engine.started = 1
        lane.busy = True
        lane.begun_ns = time.perf_counter_ns()  # as send() leaves it: within its timeout
        feed = lane.on_data
    gc.disable()  # as in a generator process
    began = time.perf_counter_ns()
    for answer in answers:
        feed(answer)
    elapsed = time.perf_counter_ns() - began
    gc.enable()
    if transport.writes != count:
        raise SystemExit(f"{variant}: {transport.writes} requests written for {count} answers")
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000, help="answers per measured run")
    parser.add_argument("--repeats", type=int, default=9, help="runs per variant (the minimum counts)")
    args = parser.parse_args()
    best = {variant: min(nanoseconds_per_request(variant, args.requests) for _ in range(args.repeats))
            for variant in VARIANTS}
    floor = best["llhttp-floor"]
    print(f"ns per request on the lane path (min of {args.repeats} x {args.requests:,} answers)")
    for variant in VARIANTS:
        print(f"  {variant:<13} {best[variant]:7.0f} ns  {best[variant] / floor:5.2f}x the llhttp floor")


if __name__ == "__main__":
    main()
