"""A responder on a real loopback socket that answers every request head with fixed bytes.

For the generator's tests that need what no well-behaved server sends: garbage, a body that
ends at close, a connection closed mid-answer, an interim 103 and the real answer later
(an answer given as a tuple of parts is sent part by part, ``pause_s`` apart), and a
listener whose backlog is full.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

Answer = bytes | tuple[bytes, ...]


class RawResponder:
    """Answers with ``answer``, or with the items of a list of answers in turn."""

    def __init__(self, answer: Answer | list[Answer], *, close_after_answer: bool = False,
                 pause_s: float = 0.0) -> None:
        self.answers = answer if isinstance(answer, list) else [answer]
        self.close_after_answer = close_after_answer
        self.pause_s = pause_s
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            pending = b""
            while not self._stopping:
                data = connection.recv(65536)
                if not data:
                    return
                pending += data
                while b"\r\n\r\n" in pending:
                    _, _, pending = pending.partition(b"\r\n\r\n")
                    answer = self.answers[self.requests % len(self.answers)]
                    self.requests += 1
                    parts = answer if isinstance(answer, tuple) else (answer,)
                    for index, part in enumerate(parts):
                        if index:
                            time.sleep(self.pause_s)
                        connection.sendall(part)
                    if self.close_after_answer:
                        return

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()


@contextlib.contextmanager
def raw_responder(answer: Answer | list[Answer], *, close_after_answer: bool = False,
                  pause_s: float = 0.0) -> Iterator[RawResponder]:
    responder = RawResponder(answer, close_after_answer=close_after_answer, pause_s=pause_s)
    try:
        yield responder
    finally:
        responder.stop()


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """The URL of a listener that never accepts, its accept queue filled by our own connects:
    the kernel drops further SYNs, so a connect to it waits (SYN retransmissions) instead of
    failing."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):  # the queue holds backlog + 1; the rest wait in SYN_SENT
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
