"""A responder on a real loopback socket that answers every request head with fixed bytes.

For the generator's tests that need what no well-behaved server sends: garbage, a body that
ends at close, a connection closed mid-answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class RawResponder:
    """Answers with ``answer``, or with the items of a list of answers in turn."""

    def __init__(self, answer: bytes | list[bytes], *, close_after_answer: bool = False) -> None:
        self.answers = answer if isinstance(answer, list) else [answer]
        self.close_after_answer = close_after_answer
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
                    connection.sendall(answer)
                    if self.close_after_answer:
                        return

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()


@contextlib.contextmanager
def raw_responder(answer: bytes | list[bytes], *, close_after_answer: bool = False) -> Iterator[RawResponder]:
    responder = RawResponder(answer, close_after_answer=close_after_answer)
    try:
        yield responder
    finally:
        responder.stop()
