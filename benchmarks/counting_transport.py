"""A transport that counts writes and sends nothing: the benchmarks that time a protocol's own
path without sockets (request_path_instructions.py for the server, lane_path.py for the
generator) stand it in for uvloop's."""

from __future__ import annotations

import asyncio
from typing import Any


class CountingTransport(asyncio.Transport):
    """Counts what the protocol writes (an answer, or the next request); sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: Any) -> None:
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
