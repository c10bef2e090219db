"""The Starlette app the ASGI peers serve (benchmarks/asgi_vs_peers.py): ``OK`` on ``/`` and
``/fast`` through Starlette's routing and response classes, the framework's own cost per
request. A module of its own: Starlette is a development tool of the lab (the dev extra), and
``lab.peers.apps`` must import without it."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


async def ok(request: Request) -> Response:
    return PlainTextResponse("OK")


app = Starlette(routes=[Route("/", ok), Route("/fast", ok)])
