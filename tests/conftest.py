from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.server import ServerHandle, start_server


@pytest.fixture
def make_server() -> Iterator[Callable[..., ServerHandle]]:
    """Start lab servers with given knobs; every one is stopped when the test ends."""
    started: list[ServerHandle] = []

    def make(**knobs: Any) -> ServerHandle:
        handle = start_server(**knobs)
        started.append(handle)
        return handle

    yield make
    for handle in started:
        handle.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerHandle]) -> ServerHandle:
    """A lab server with default settings, in a background thread."""
    return make_server()
