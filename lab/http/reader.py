"""Reading HTTP/1.1 requests from bytes: no socket, no event loop, no clock.

A ``RequestReader`` is fed one connection's bytes as they arrive, cut anywhere, and tells
its listener what they hold: a complete request, or a rejection (a status, a reason, the
error counter it belongs to) after which it reads nothing more. What to answer, when to
write, which deadline runs: those are the listener's (``HttpConnection``), so the reader is
tested by feeding it bytes and recording what it reports (tests/test_http_reader.py).

Two parsers read the same subset of HTTP/1.1 behind it. The plain heads nearly every client
sends (GET or HEAD, no body, see lab/http/_headscan.c) are read by the compiled head scanner
in one C call; everything else -- bodies, odd heads, malformed bytes -- by llhttp (httptools),
which reports through a Python call per event. The scanner reads only between messages: a
head llhttp has begun stays llhttp's to the end. Both give the same request for the same
bytes (tests/test_headscan.py checks it with generated heads).

Its listener hears of each request through one call that says whether to read on, rather
than through a list of events per read: the request path is the server's hot path, and a
list and an event object per request would cost more than the parsing of a plain head.

Framing is strict (RFC 9112): exactly one Host in HTTP/1.1, ``chunked`` as the only
transfer coding, a head no longer than ``max_header_bytes`` (cut as it grows, not only once
complete), a body no longer than ``max_body_bytes``.

A listener that takes bodies as they arrive (``stream_bodies_to``, a hosted ASGI app's
connection) hears of a request with a body as soon as its head is complete and checked
(Host, transfer coding, a ``Content-Length`` within the limit), then of each part of the body
as llhttp reads it, then of its end. A fault found later in such a body (a chunked body
growing past the limit, malformed chunk framing) is a rejection as before; the listener has
the request already and must end it.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import NamedTuple, Protocol

import httptools

ScanHead = Callable[[bytes | bytearray | memoryview, int, int, int],
                    "tuple[int, str, str, str, list[tuple[bytes, bytes]]] | None"]
try:
    # Built by `pip install` from lab/http/_headscan.c: the plain heads nearly every client
    # sends, parsed in one C call instead of a Python callback per httptools event.
    from lab.http._headscan import scan_head as _compiled_scan_head
    scan_head: ScanHead | None = _compiled_scan_head
except ImportError:  # no compiler where the lab was installed: llhttp parses every head
    scan_head = None


class Phase(enum.Enum):
    """Where the reader is in the connection's stream of requests."""

    IDLE = enum.auto()  # between requests: no byte of the next one read yet
    HEAD = enum.auto()  # inside a request's head
    BODY = enum.auto()  # the head is complete; its body (perhaps empty) is being read
    UPGRADED = enum.auto()  # a request switched protocols: what follows it is not HTTP
    REJECTED = enum.auto()  # a request was refused: what follows it is not read
    CLOSED = enum.auto()  # the listener will answer nothing more: what follows is not read


# The phases each phase may go to. A head the scanner reads whole goes from IDLE to IDLE in
# one step (a request, then the next one); llhttp goes through HEAD and BODY, and back to IDLE
# once the request is complete -- which is where a request that switched protocols, or whose
# answer closes the connection, leaves HTTP/1.1 (llhttp calls on_message_begin before it can
# refuse a byte, so IDLE goes to REJECTED only when the listener fails while told of a
# request, which llhttp reports as its own error). The last three phases are final. The phase
# is set directly where it changes (a lookup here per event would cost the hot path), and
# tests/test_http_reader.py checks every change it sees against this table.
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.IDLE: frozenset((Phase.HEAD, Phase.UPGRADED, Phase.REJECTED, Phase.CLOSED)),
    Phase.HEAD: frozenset((Phase.BODY, Phase.REJECTED)),
    Phase.BODY: frozenset((Phase.IDLE, Phase.REJECTED)),
    Phase.UPGRADED: frozenset(),
    Phase.REJECTED: frozenset(),
    Phase.CLOSED: frozenset(),
}
# Module-level names for the hot path: looking a member up on an Enum class costs ~100 ns.
IDLE, HEAD, BODY = Phase.IDLE, Phase.HEAD, Phase.BODY
UPGRADED, REJECTED, CLOSED = Phase.UPGRADED, Phase.REJECTED, Phase.CLOSED


class Rejection(NamedTuple):
    """A request the reader refuses: the answer's status and reason, and the error counter."""

    status: int
    reason: str
    error_kind: str


class RequestListener(Protocol):
    """What a reader tells, in the order the bytes say it."""

    def on_request(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                   body: bytes, http_version: str, keep_alive: bool) -> bool:
        """A complete request; return True to read nothing after it (the answer said close)."""
        ...

    def on_rejection(self, rejection: Rejection) -> None:
        """The bytes are no request this server reads; nothing after them will be read."""
        ...

    def on_continue_expected(self) -> None:
        """The head asked for ``100 Continue`` before the client sends its body."""
        ...

    def on_upgrade(self, rest: bytes) -> None:
        """The request just reported switched protocols; ``rest`` is what followed it."""
        ...


# Header fields the reader itself enforces. Their names differ in length, so a length test
# rules out most other headers before any lower-casing.
_HOST, _EXPECT, _CONTENT_LENGTH, _TRANSFER_ENCODING = (
    b"host", b"expect", b"content-length", b"transfer-encoding")
_FRAMING_NAMES = frozenset((_HOST, _EXPECT, _CONTENT_LENGTH, _TRANSFER_ENCODING))
_FRAMING_NAME_LENGTHS = frozenset(len(name) for name in _FRAMING_NAMES)
# Method names as str, without decoding the parser's bytes for the common ones.
METHOD_NAMES = {name.encode(): name for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                                  "PATCH", "CONNECT", "TRACE")}
# The bytes of an RFC 3986 host (reg-name, IPv4, [IP-literal]) and :port; empty is allowed too
# (for a target without an authority). _headscan.c accepts only such values as well.
_ALPHANUMERIC = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_HOST_BYTES = _ALPHANUMERIC + b"-._~%!$&'()*+,;=:[]"
# RFC 9110 section 5.6.2: the characters of a token, such as a method name.
_TOKEN_BYTES = _ALPHANUMERIC + b"!#$%&'*+-.^_`|~"


_PORT_DIGITS = len("65535")
# A chunk size llhttp accepts has at most 16 hex digits (it must fit 64 bits).
_CHUNK_SIZE_CHARS = 16
_HEX_DIGITS = b"0123456789abcdefABCDEF"
# A Content-Length with more digits is over any body limit (int() would refuse past 4300).
_LENGTH_DIGITS = 19


# A connection sends the same Host with every request: checked once, it is one lookup after
# (callgrind: the check cost ~10,000 instructions per request on llhttp's path, cached ~300).
@functools.lru_cache(maxsize=256)
def _host_is_valid(value: bytes) -> bool:
    """A Host value of host characters shaped as host[:port]: a bracketed IP literal or a name
    with no brackets or colons, then an optional port (RFC 3986 section 3.2.3) that a TCP port
    can be -- at most 65535. _headscan.c's host_is_valid is the same rule."""
    if value[:1] == b"[":
        close = value.find(b"]")
        if close < 0:
            return False
        rest = value[close + 1:]
    else:
        name = value.partition(b":")[0]
        if b"[" in name or b"]" in name:
            return False
        rest = value[len(name):]
    if not rest:
        return True
    port = rest[1:]
    return (rest[:1] == b":" and len(port) <= _PORT_DIGITS and (not port or port.isdigit())
            and int(port or b"0") <= 65535)


def _unknown_method(data: bytes) -> bytes | None:
    """The method llhttp stopped at, when ``data`` (what it was fed) holds a request line
    whose method it does not know (a token, a space, a target): RFC 9110 section 9.1 answers
    that with 501, where bytes that are no request line at all (a TLS hello, garbage) are 400.

    The parser does not say where it stopped, so the last line shaped like a request line
    with an unknown method is taken (the parse stops at the first, but a body without a line
    end glues itself to the next request line, and a pipeline rarely holds two unknown
    methods); header lines cannot be one (a colon ends their first word). The answer is the
    same wherever in a pipeline the parse began.
    """
    for line in reversed(data.split(b"\n")):
        method, space, rest = line.partition(b" ")
        if (space and 0 < len(method) <= 32 and not method.translate(None, _TOKEN_BYTES)
                and rest[:1] in (b"/", b"*", b"h") and not _llhttp_knows(method)):
            return method
    return None


@functools.lru_cache(maxsize=256)  # a read of 64 KiB of "GET /" lines asks once, not 10,000 times
def _llhttp_knows(method: bytes) -> bool:
    """llhttp's own answer (it knows WebDAV's, RTSP's and other methods beyond HTTP's)."""
    try:
        httptools.HttpRequestParser(object()).feed_data(method + b" / HTTP/1.1\r\n")
    except httptools.HttpParserInvalidMethodError:
        return False
    except httptools.HttpParserError:
        return True
    return True


def _origin_form(target: bytes) -> bytes:
    """The path and query of an absolute-form target (``http://host/path?q``), which a server
    must accept (RFC 9112 section 3.2.2); other forms as they are."""
    scheme, separator, rest = target.partition(b"://")
    if not separator or target[:1] == b"/" or scheme.lower() not in (b"http", b"https"):
        return target
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"


def _new_parser(reader: RequestReader) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(reader)
    # llhttp refuses any version but 0.9, 1.0, 1.1 and 2.0 as malformed (400); lenient, it
    # reads every digit.digit, and on_headers_complete answers as RFC 9110 section 2.5 says:
    # a higher minor version of HTTP/1 as 1.1, another major version with 505.
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


class BodyListener(RequestListener, Protocol):
    """A listener that takes request bodies in parts, as they are read."""

    def on_request_head(self, method: str, path: str, query: str, headers: list[tuple[bytes, bytes]],
                        http_version: str, keep_alive: bool) -> bool:
        """A request whose body follows; return True to read nothing more (as on_request)."""
        ...

    def on_body_part(self, data: bytes) -> None:
        """The next bytes of that request's body (its payload: chunk framing removed)."""
        ...

    def on_body_end(self) -> bool:
        """The body is complete; return True to read nothing after it."""
        ...


class _Refused(Exception):
    """Raised inside a parser callback to stop llhttp at a request the reader refuses."""


class _Stopped(Exception):
    """Raised inside a parser callback to stop llhttp after the listener's last request."""


class RequestReader:
    """One connection's requests, read from its bytes (see the module's docstring)."""

    __slots__ = (
        "_body_bytes",
        "_body_expected",
        "_body_listener",
        "_body_parts",
        "_chunk_line",
        "_chunk_pending",
        "_chunk_start",
        "_chunked",
        "_expect_continue",
        "_head_bytes",
        "_head_slack",
        "_header_bytes",
        "_headers",
        "_host_count",
        "_http_version",
        "_listener",
        "_on_request",
        "_parser",
        "_progress",
        "_read_size",
        "_rejection",
        "_scan",
        "_streaming",
        "_transfer_codings",
        "_upgrade",
        "_url",
        "heads_completed",
        "max_body_bytes",
        "max_header_bytes",
        "phase",
    )

    def __init__(self, listener: RequestListener, *, max_header_bytes: int, max_body_bytes: int,
                 scan: ScanHead | None = scan_head) -> None:
        self._listener = listener
        self._on_request = listener.on_request  # bound once: called for every request
        self._scan = scan
        # A reconfigure may change these between reads; they apply from the next check on.
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.phase = IDLE
        self._parser = _new_parser(self)
        self._rejection: Rejection | None = None
        self._progress: Phase | None = None  # what the read being parsed began or moved on
        self._read_size = 0  # bytes of the read llhttp is parsing now
        self._head_bytes = 0  # bytes read while this request's head was incomplete
        self._head_slack = 0  # of those, the read it began in (part of it may be earlier bytes)
        self._url: bytes | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body_parts: list[bytes] | None = None  # made by the first body bytes
        self._header_bytes = 0
        self._body_bytes = 0
        self._host_count = 0
        self._expect_continue = False
        self._transfer_codings: list[bytes] | None = None
        self._upgrade = False
        self._chunked = False  # this request's body is chunked
        self._chunk_pending = False  # a chunk's size line ended in the read being parsed
        self._chunk_start = 0  # body bytes before that chunk's data
        self._chunk_line = b""  # the start of the chunked body's last line, as far as read
        self._http_version = "1.1"  # llhttp's, read once the head is complete
        self.heads_completed = 0  # heads llhttp read whole: a new one begins a new body
        self._body_listener: BodyListener | None = None  # set: bodies go to it as they are read
        self._body_expected = False  # the head announced a Content-Length above zero
        self._streaming = False  # this request's head was reported; its body goes out in parts

    def stream_bodies_to(self, listener: BodyListener) -> None:
        """From the next request on, report a request with a body at its head and its body in
        parts (see the module's docstring), instead of once the body is whole."""
        self._body_listener = listener

    def feed(self, data: bytes | bytearray | memoryview, end: int) -> Phase | None:
        """Read ``data[:end]``, the next bytes of the connection; after a final phase
        (upgraded, rejected, closed) they are ignored.

        Returns HEAD when a head began in these bytes and is not complete (its timeout
        starts), BODY when a body moved on and is not complete (its timeout starts again),
        else None. A return value, not a call per event: on llhttp's path each Python call
        is ~2 % of a request.
        """
        offset = 0
        phase = self.phase
        if phase is IDLE:
            scan = self._scan
            if scan is not None:
                limit, on_request = self.max_header_bytes, self._on_request
                while offset < end:
                    head = scan(data, offset, end, limit)
                    if head is None:
                        break
                    offset, method, path, query, headers = head
                    if on_request(method, path, query, headers, b"", "1.1", True):
                        self.phase = CLOSED
                        return None
                if offset == end:
                    return None
        elif phase is not HEAD and phase is not BODY:
            return None
        fed = data[offset:end]
        self._read_size = end
        self._progress = None
        try:
            self._parser.feed_data(fed)
        except httptools.HttpParserUpgrade as upgrade:
            # The request asked to switch protocols (Upgrade, or CONNECT) and was reported;
            # what follows it in this read is no longer HTTP.
            self.phase = UPGRADED
            self._listener.on_upgrade(bytes(fed[upgrade.args[0]:]))
            return None
        except httptools.HttpParserError as error:
            if self.phase is CLOSED:
                return None
            rejection = self._rejection
            if rejection is None:
                rejection = self._parse_error(error, bytes(fed))
            self._reject(rejection)
            return None
        if self.phase is HEAD and self._head_too_large(end):
            return None
        if self._chunked and self.phase is BODY and self._chunk_too_large(fed):
            return None
        return self._progress

    def _reject(self, rejection: Rejection) -> None:
        self.phase = REJECTED
        self._listener.on_rejection(rejection)

    @staticmethod
    def _parse_error(error: httptools.HttpParserError, fed: bytes) -> Rejection:
        """400 for bytes llhttp refused; 501 for a method it does not know (see _unknown_method)."""
        method = _unknown_method(fed) if isinstance(error, httptools.HttpParserInvalidMethodError) else None
        if method is not None:
            return Rejection(501, f"method {method.decode()} is not implemented", "not_implemented")
        return Rejection(400, f"malformed request: {error}", "bad_request")

    def _head_too_large(self, nbytes: int) -> bool:
        """Cut a request head that keeps growing, before it is complete.

        httptools reports a header only once it ends (joining the parts of a long value by
        repeated copies), so ``on_header``'s count alone lets an endless header line grow
        without bound. Bytes read since the head began bound it from above; the read it
        began in may also hold the end of an earlier request, so that read is not counted:
        a head is cut only when it really is over the limit.
        """
        self._head_bytes += nbytes
        if self._head_bytes - self._head_slack <= self.max_header_bytes:
            return False
        self._reject(Rejection(431, "request header fields too large", "header_too_large"))
        return True

    def _refuse(self, status: int, reason: str, error_kind: str) -> None:
        self._rejection = Rejection(status, reason, error_kind)
        raise _Refused(reason)

    # httptools callbacks, in the order they come

    def on_message_begin(self) -> None:
        self.phase = HEAD
        self._head_bytes = 0
        self._head_slack = self._read_size
        # What every request sets; the rarer fields are put back where they are used up.
        self._url = None
        self._headers = []
        self._header_bytes = self._host_count = 0
        self._chunked = self._chunk_pending = False
        self._body_expected = self._streaming = False
        self._progress = HEAD

    def on_url(self, url: bytes) -> None:
        # A URL split across two reads arrives in two calls.
        self._url = url if self._url is None else self._url + url
        self._header_bytes += len(url)
        if self._header_bytes > self.max_header_bytes:
            self._refuse(414, "request target too long", "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.max_header_bytes:
            self._refuse(431, "request header fields too large", "header_too_large")
        if name == b"Host":  # as nearly every client spells it: no lower-casing, no lookup
            self._host_count += 1
            if value.translate(None, _HOST_BYTES) or not _host_is_valid(value):
                self._bad_host()
        elif len(name) in _FRAMING_NAME_LENGTHS:
            lowered = name.lower()
            if lowered in _FRAMING_NAMES:
                self._framing_header(lowered, value)

    def _framing_header(self, name: bytes, value: bytes) -> None:
        if name == _HOST:
            self._host_count += 1
            if value.translate(None, _HOST_BYTES) or not _host_is_valid(value):
                self._bad_host()
        elif name == _CONTENT_LENGTH:
            if value.isdigit() and (len(value) > _LENGTH_DIGITS or int(value) > self.max_body_bytes):
                # Refused before any of the body is read, so an Expect: 100-continue
                # client gets the final answer at once instead of sending the body.
                self._refuse(413, f"body over {self.max_body_bytes} bytes", "body_too_large")
            self._body_expected = value.strip(b"0") != b""
        elif name == _TRANSFER_ENCODING:
            if self._transfer_codings is None:
                self._transfer_codings = []
            self._transfer_codings.append(value)
        elif name == _EXPECT:
            self._expect_continue = value.strip().lower() == b"100-continue"

    def _bad_host(self) -> None:
        # RFC 9112 section 3.2: a Host whose value is not a host[:port] is a 400, like two.
        self._refuse(400, "the Host header is not a host name or address with a port (0-65535)",
                     "bad_request")

    def phase_bytes(self) -> int:
        """Bytes of the request read so far in its phase: the reads since its head began, or
        its body's payload (what the listener's minimum rates are measured on)."""
        if self.phase is HEAD:
            return self._head_bytes
        if self.phase is BODY and self._body_parts is not None:
            return self._body_bytes
        return 0

    def on_headers_complete(self) -> None:
        self.phase = BODY
        self.heads_completed += 1
        parser = self._parser
        # httptools formats the version into a new string on every call (~2,500 instructions):
        # read once here, where it is checked, and kept for the request.
        self._http_version = version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            if version[:2] != "1.":
                # RFC 9110 section 15.6.6: a major version the server does not speak.
                self._refuse(505, f"HTTP/{version} is not supported; this server speaks HTTP/1.1",
                             "bad_request")
            self._http_version = version = "1.1"  # HTTP/1.2 and on: the highest minor we speak
        if self._host_count != 1 and (self._host_count > 1 or version != "1.0"):
            # RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host; HTTP/1.0 at most one.
            self._refuse(400, "a request needs exactly one Host header", "bad_request")
        if self._transfer_codings is not None:
            codings, self._transfer_codings = self._transfer_codings, None
            if version == "1.0":
                # RFC 9112 section 6.1: HTTP/1.0 has no transfer codings, so its framing is
                # faulty; the answer closes the connection (a rejection always does).
                self._refuse(400, "Transfer-Encoding in an HTTP/1.0 request", "bad_request")
            self._check_transfer_coding(codings)
            self._chunked = True
        self._upgrade = parser.should_upgrade()
        self._progress = BODY
        if self._expect_continue:
            self._expect_continue = False
            # RFC 9110 section 10.1.1: a 100-continue expectation in HTTP/1.0 is ignored.
            if version != "1.0":
                self._listener.on_continue_expected()
        listener = self._body_listener
        if listener is not None and (self._chunked or self._body_expected) and not self._upgrade:
            self._report_head(listener)

    def _report_head(self, listener: BodyListener) -> None:
        """Tell a body listener of the request now; its body follows in parts."""
        self._streaming = True
        self._body_parts = []  # counts as begun for the limits, never holds a part
        self._body_bytes = 0
        parser = self._parser
        url = self._url or b"/"
        path, mark, query = (url if url[:1] == b"/" else _origin_form(url)).partition(b"?")
        raw_method = parser.get_method()
        if listener.on_request_head(METHOD_NAMES.get(raw_method) or raw_method.decode("ascii"),
                                    path.decode("latin-1"), query.decode("latin-1") if mark else "",
                                    self._headers, self._http_version, parser.should_keep_alive()):
            self.phase = CLOSED
            raise _Stopped

    def _check_transfer_coding(self, codings: list[bytes]) -> None:
        """Only ``chunked`` alone is understood: anything else could be framed two ways.

        RFC 9112 section 6.1: a coding the server does not understand gets 501; a list that
        does not end in chunked leaves the body's end unknown (llhttp would read it anyway).
        """
        if len(codings) != 1 or codings[0].strip().lower() != b"chunked":
            shown = ", ".join(coding.decode("latin-1") for coding in codings)
            self._refuse(501, f"transfer coding {shown!r} is not implemented; use chunked", "bad_request")

    def on_chunk_header(self) -> None:
        self._chunk_pending = True
        self._chunk_start = self._body_bytes if self._body_parts is not None else 0

    def on_chunk_complete(self) -> None:
        self._chunk_pending = False

    def _chunk_too_large(self, fed: bytes | bytearray | memoryview) -> bool:
        """Refuse a chunk whose size line says it takes the body over ``max_body_bytes``, at
        once: llhttp reports a chunk's data only as it arrives, and a client that announces
        more than the limit and sends it slowly would otherwise be waited for.

        llhttp does not say what size it read, but a chunk begun in this read and not
        complete has all its data so far at the end of the read, right after its size line;
        the start of that line may be in an earlier read (``_chunk_line`` keeps it).
        """
        data = bytes(fed)  # only a chunked body's reads come here
        previous = self._chunk_line
        last_newline = data.rfind(b"\n")
        self._chunk_line = (data[last_newline + 1:] if last_newline >= 0 else previous + data)[
            :_CHUNK_SIZE_CHARS]
        if not self._chunk_pending:
            return False
        self._chunk_pending = False
        start = self._chunk_start
        # Where the size line's CRLF begins: before this chunk's data, which ends the read.
        line_end = max(0, len(data) - (self._body_bytes - start if self._body_parts is not None else 0) - 2)
        line_start = data.rfind(b"\n", 0, line_end) + 1
        size_line = data[line_start:line_end] if line_start else previous + data[:line_end]
        digits = size_line[:len(size_line) - len(size_line.lstrip(_HEX_DIGITS))]
        if start + int(digits or b"0", 16) <= self.max_body_bytes:
            return False
        self._reject(Rejection(413, f"body over {self.max_body_bytes} bytes", "body_too_large"))
        return True

    def on_body(self, body: bytes) -> None:
        parts = self._body_parts
        if parts is None:
            self._body_parts = parts = []
            self._body_bytes = 0
        self._body_bytes += len(body)
        if self._body_bytes > self.max_body_bytes:  # chunked bodies have no length up front
            self._refuse(413, f"body over {self.max_body_bytes} bytes", "body_too_large")
        if self._streaming:
            assert self._body_listener is not None
            self._body_listener.on_body_part(body)
        else:
            parts.append(body)
        self._progress = BODY

    def on_message_complete(self) -> None:
        self.phase = IDLE
        self._progress = None  # the listener's answer decides what is waited for next
        parser = self._parser
        url = self._url or b"/"
        path, mark, query = (url if url[:1] == b"/" else _origin_form(url)).partition(b"?")
        parts = self._body_parts
        if parts is not None:
            self._body_parts = None
        if self._streaming:
            self._streaming = False
            assert self._body_listener is not None
            if self._body_listener.on_body_end():
                self.phase = CLOSED
                raise _Stopped
            return
        upgrade = self._upgrade
        raw_method = parser.get_method()
        method = METHOD_NAMES.get(raw_method) or raw_method.decode("ascii")
        body = (parts[0] if len(parts) == 1 else b"".join(parts)) if parts else b""
        if self._on_request(method, path.decode("latin-1"), query.decode("latin-1") if mark else "",
                            self._headers, body, self._http_version,
                            parser.should_keep_alive() and not upgrade) and not upgrade:
            # llhttp would read on to the end of this read; an upgrade it ends itself, saying
            # where the other protocol's bytes begin.
            self.phase = CLOSED
            raise _Stopped
