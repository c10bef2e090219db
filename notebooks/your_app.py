"""The service of notebook 16: a small FastAPI app standing in for yours.

Each answer waits for a back-end call (a database, another service), awaited, so the server
answers other requests meanwhile. The same item comes two ways: ``/items/{id}`` as JSON, one
body the server writes in one go, and ``/items/{id}/report`` as a ``StreamingResponse`` of two
parts, which any server writes as it gets them: the head, then each part, in separate writes
(the shape a streamed answer, server-sent events or a template flushed early all have).

Hosted by the lab's server (``lab.start_server(app="your_app:app")``) or by uvicorn
(``python -m uvicorn your_app:app``), imported from the notebooks' folder.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

BACKEND_SECONDS = 0.002  # what the back-end call takes

app = FastAPI()


async def fetch_price(item_id: int) -> float:
    """The back-end call: the request waits for it without holding the event loop."""
    await asyncio.sleep(BACKEND_SECONDS)
    return round(1 + 0.25 * item_id, 2)


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int | float]:
    return {"item_id": item_id, "price": await fetch_price(item_id)}


@app.get("/items/{item_id}/report")
async def report(item_id: int) -> StreamingResponse:
    price = await fetch_price(item_id)

    async def parts() -> AsyncIterator[bytes]:
        yield f"item {item_id}\n".encode()
        yield f"price {price}\n".encode()

    return StreamingResponse(parts(), media_type="text/plain")
