"""ASGI apps the server hosts in tests/test_asgi.py: hand-written callables for the edge cases,
and a real Starlette and a real FastAPI app. Importable by name (``asgi_apps:starlette_app``),
so the CLI and server processes can load them too."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import BackgroundTasks, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket as StarletteWebSocket

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

STATIC_FILE = Path(__file__).with_name("asgi_static.txt")
# What the apps' background tasks did, read by the tests (the server runs in a thread here).
BACKGROUND: list[str] = []
# What apps saw of disconnects, read by the tests.
EVENTS: list[str] = []
# body_app's /held waits for this before it reads its body (the test sets it).
RELEASE_BODY = threading.Event()


async def _answer(send: Send, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


# --- hand-written callables ------------------------------------------------------------------

async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the scope it got (JSON), and the request body's messages."""
    if scope["type"] != "http":
        return
    messages = []
    while True:
        message = await receive()
        messages.append({"type": message["type"], "body": message["body"].decode("latin-1"),
                         "more_body": message["more_body"]})
        if not message["more_body"]:
            break
    shown = {key: value for key, value in scope.items() if key not in ("extensions", "state")}
    shown["headers"] = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]]
    shown["raw_path"] = scope["raw_path"].decode("latin-1")
    shown["query_string"] = scope["query_string"].decode("latin-1")
    shown["messages"] = messages
    shown["socket_options"] = scope["extensions"]["lab.socket_options"]["read"]()
    await _answer(send, 200, json.dumps(shown).encode(), [(b"content-type", b"application/json")])


async def edge_app(scope: Scope, receive: Receive, send: Send) -> None:
    """One path per edge case of the HTTP protocol."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/chunks":  # no Content-Length, several body messages: chunked on HTTP/1.1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"yes")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/fail":
        raise RuntimeError("the app broke before answering")
    elif path == "/fail-midway":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("the app broke while streaming")
    elif path == "/nothing":
        return  # returned without a response
    elif path == "/bad-header":
        await _answer(send, 200, b"", [(b"x-evil", b"a\r\nSet-Cookie: b")])
    elif path == "/wrong-length":
        await _answer(send, 200, b"abc", [(b"content-length", b"10")])
    elif path == "/no-content":
        await _answer(send, 204, b"")
    elif path == "/close":
        await _answer(send, 200, b"bye", [(b"connection", b"close")])
    elif path == "/big-stream":  # 64 MiB in 64 KiB chunks: more than the socket buffers hold
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % (1024 * 65536))]})
        chunk = b"x" * 65536
        for _ in range(1024):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        EVENTS.append("big-stream sent")
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait-disconnect":  # answers, then waits for the client to go
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        message = await receive()  # the body first
        message = await receive()
        EVENTS.append(message["type"])
    elif path == "/slow":
        await asyncio.sleep(0.2)
        await _answer(send, 200, b"slow")
    else:
        await _answer(send, 200, path.encode())


async def body_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads its request body message by message and answers with what each message held:
    ``{"parts": [[length, more_body], ...], "body": first 64 bytes}``. /held first waits for
    RELEASE_BODY; /ignore answers without reading the body, /ignore-later the same once the body
has arrived; a disconnect goes to EVENTS."""
    if scope["type"] != "http":
        return
    if scope["path"] in ("/ignore", "/ignore-later"):
        if scope["path"] == "/ignore-later":
            await asyncio.sleep(0.3)  # the whole body has arrived by now
        await _answer(send, 200, b"ignored")
        return
    if scope["path"] == "/held":
        while not RELEASE_BODY.is_set():
            await asyncio.sleep(0.01)
    parts: list[tuple[int, bool]] = []
    start = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            EVENTS.append(f"http.disconnect after {len(parts)} parts")
            return
        parts.append((len(message["body"]), message["more_body"]))
        start = (start + message["body"])[:64]
        if not message["more_body"]:
            break
    await _answer(send, 200, json.dumps({"parts": parts, "body": start.decode("latin-1")}).encode(),
                  [(b"content-type", b"application/json")])


async def ws_app(scope: Scope, receive: Receive, send: Send) -> None:
    """WebSocket: /deny refuses before accepting; /echo accepts (with the first subprotocol
    offered and a header), echoes, closes with 4001 on "bye"; every disconnect is recorded."""
    if scope["type"] != "websocket":
        if scope["type"] == "http":
            await _answer(send, 200, b"http")
        return
    connect = await receive()
    assert connect["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.close"})
        return
    if scope["path"] == "/boom":
        raise RuntimeError("the app broke before accepting")
    if scope["path"] == "/flood":  # 64 MiB in 64 KiB messages: more than the socket buffers hold
        await send({"type": "websocket.accept"})
        for _ in range(1024):
            await send({"type": "websocket.send", "bytes": b"x" * 65536})
        EVENTS.append("flood sent")
        return
    if scope["path"] == "/late-send":  # sends once the client has gone
        await send({"type": "websocket.accept"})
        EVENTS.append((await receive())["type"])
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as refused:
            EVENTS.append(type(refused).__name__)
        return
    subprotocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": subprotocols[0] if subprotocols else None,
                "headers": [(b"x-accepted", b"yes")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            EVENTS.append(f"ws disconnect {message['code']}")
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            continue
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def failing_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Its lifespan startup fails, as an app whose database is down does."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await _answer(send, 200, b"never")


@asynccontextmanager
async def _failing_lifespan(app: Starlette) -> AsyncIterator[None]:
    raise ConnectionError("database unreachable")
    yield  # pragma: no cover


failing_starlette_app = Starlette(lifespan=_failing_lifespan)


# --- Starlette ---------------------------------------------------------------------------------

@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    EVENTS.append("startup")
    yield {"greeting": "hello from lifespan"}
    EVENTS.append("shutdown")


async def _home(request: Request) -> Response:
    return JSONResponse({"framework": "starlette", "greeting": request.state.greeting})


async def _echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"length": len(body), "start": body[:10].decode("latin-1")})


async def _numbers(request: Request) -> Response:
    async def numbers() -> AsyncIterator[bytes]:
        for number in range(5):
            yield f"{number}\n".encode()
            await asyncio.sleep(0)
    return StreamingResponse(numbers(), media_type="text/plain")


async def _file(request: Request) -> Response:
    return FileResponse(STATIC_FILE)


async def _later(request: Request) -> Response:
    return PlainTextResponse("answered", background=BackgroundTask(BACKGROUND.append, "starlette task ran"))


async def _ok(request: Request) -> Response:
    return PlainTextResponse("OK")


async def _websocket(websocket: StarletteWebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"starlette: {text}")


starlette_app = Starlette(lifespan=_lifespan, routes=[
    Route("/", _home), Route("/echo", _echo, methods=["POST"]), Route("/numbers", _numbers),
    Route("/file", _file), Route("/later", _later), Route("/ok", _ok), WebSocketRoute("/ws", _websocket),
])


# --- FastAPI -----------------------------------------------------------------------------------

fastapi_app = FastAPI()


@fastapi_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@fastapi_app.post("/items")
async def create_item(item: dict[str, Any]) -> dict[str, Any]:
    return {"received": item}


@fastapi_app.get("/sync")
def sync_route() -> dict[str, str]:
    return {"ran": "in a thread"}  # a plain def: FastAPI runs it in its thread pool


@fastapi_app.get("/stream")
async def stream() -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part
    return StreamingResponse(parts())


@fastapi_app.get("/file")
async def file() -> FileResponse:
    return FileResponse(STATIC_FILE)


@fastapi_app.get("/later")
async def later(tasks: BackgroundTasks) -> dict[str, bool]:
    tasks.add_task(BACKGROUND.append, "fastapi task ran")
    return {"queued": True}


@fastapi_app.websocket("/ws")
async def websocket_route(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        data = await websocket.receive_json()
        await websocket.send_json({"fastapi": data})
