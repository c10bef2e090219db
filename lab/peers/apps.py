"""ASGI apps that peers run in their own processes (importable, so ``uvicorn lab.peers.apps:ok_app``
works from a subprocess)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OK_PATHS = frozenset({"/", "/fast"})

# Built once, like the lab's precomputed /fast: uvicorn only reads these messages, so the same
# dicts can be sent for every request and the comparison measures the server, not the app.
OK_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
}
OK_BODY: Message = {"type": "http.response.body", "body": b"OK"}
NOT_FOUND_START: Message = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"10")],
}
NOT_FOUND_BODY: Message = {"type": "http.response.body", "body": b"not found\n"}


async def ok_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app: ``OK`` on ``/`` and ``/fast``, 404 elsewhere; no framework in between."""
    if scope["type"] != "http":
        return  # uvicorn runs with --lifespan off; nothing else is expected
    if scope["path"] in OK_PATHS:
        await send(OK_START)
        await send(OK_BODY)
    else:
        await send(NOT_FOUND_START)
        await send(NOT_FOUND_BODY)


async def ws_echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``ok_app`` for HTTP (the readiness probe), and each WebSocket message sent back as it came.

    Raw ASGI, no framework, like ``ok_app``: uvicorn's WebSocket back-end is what is measured.
    """
    if scope["type"] == "http":
        await ok_app(scope, receive, send)
        return
    if scope["type"] != "websocket":
        return
    # ASGI: the connect event comes first, and nothing is accepted before it is read.
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
