"""HTTP/1.1 for the measured requests: a keep-alive connection pool on bare asyncio protocols.

Reading streams through `aiohttp.ClientSession.post` costs about twice the CPU of a bare asyncio
reader (request and response objects, a writer task, a read timer and a task wake-up per network
read; `benchmarks/client_speed.py` measures both), and a load generator that spends more time per
request than the server blurs what it measures. So the benchmark's own requests run here:

- a request is a head rendered once per run plus a body, written without copying a large body;
- each network read is handled in the protocol callback itself and stamped once, when the bytes
  reached the client rather than when a task got round to them; llhttp frames the response
  (status line, headers, then a chunked, sized or close-delimited body) in C, several times faster
  than slicing it in Python, and the body bytes of the whole read go to the request's `Consumer` in
  one call;
- one periodic check of the pool enforces every request's stall limit, instead of a timer each.

It knows nothing of what the bytes mean: the consumer decides what a response is worth.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import NamedTuple, Protocol, cast
from urllib.parse import urlsplit

import httptools

MAX_HEAD_BYTES = 64 * 1024
# Below this the head and body go out in one write; above it the body is written on its own so
# it is never copied (the transport only copies what the kernel did not take).
JOIN_BODY_BELOW = 16 * 1024
# The stall check runs at least this often, and four times per the shortest stall limit.
WATCH_PERIOD_S = 1.0

_FORBIDDEN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))


class Origin(NamedTuple):
    """Where connections go; connections are pooled per origin."""

    host: str
    port: int
    tls: bool


def split_url(url: str) -> tuple[Origin, str, str]:
    """The origin, path and `Host` header value of an http(s) URL; `ValueError` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL, not {url!r}")
    tls = parts.scheme == "https"
    origin = Origin(parts.hostname, parts.port or (443 if tls else 80), tls)
    return origin, parts.path, parts.netloc.rpartition("@")[2]


def request_head(method: str, path: str, host: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """A request head up to the value of Content-Length, rendered once for all requests of a run
    (`Connection.send` adds the length). Framing headers are this module's business: a header that
    would change them, or that would split the head, is a `ValueError`."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if any(c in name + value for c in "\r\n") or ":" in name:
            raise ValueError(f"header {name!r} contains a line break or a colon in its name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"header {name!r} is set by the client itself")
        lines.append(f"{name}: {value}")
    try:
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("header names and values must be Latin-1 text") from None


class Consumer(Protocol):
    """What one request's response is handed to. Every method is called inside the connection's
    read callback, so none may block; `head` and `body` may raise to stop reading (the connection is
    then closed and `broken` is called with what was raised). Exactly one of `end`, `lost`,
    `broken` or `stalled` ends each response."""

    def head(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
        """The final response head (1xx heads are skipped); header names are lower case."""

    def body(self, pieces: list[bytes], now: float) -> None:
        """The body bytes of one network read, in order, all of them received at `now`."""

    def end(self, now: float) -> None:
        """The response ended as its framing says."""

    def lost(self, exc: BaseException | None, now: float) -> None:
        """The connection closed before the response ended (`exc` None: closed by the server),
        or before the request could be written."""

    def broken(self, exc: Exception) -> None:
        """The response cannot be read on: bad HTTP, or raised by `head` or `body`."""

    def stalled(self) -> None:
        """No byte for the request's stall limit; the connection is closed."""


class ResponseParser:
    """One response, fed one network read at a time: llhttp (the C parser behind uvicorn, through
    `httptools`) frames it, calling back per header and per span of body bytes; the spans of a
    read are collected and handed over together. After the head, `status`, `reason`, `headers`
    (lower-case names, repeated ones joined with ", ") and `keep_alive` are set; 1xx heads are
    skipped. `leftover` tells whether bytes followed the end (the connection can no longer be
    trusted), `until_close` whether the body ends when the connection closes. Bytes that are not an
    HTTP/1.x response raise `ValueError`."""

    __slots__ = (
        "_ended",
        "_head_now",
        "_informational",
        "_parser",
        "_pieces",
        "_reason",
        "_seen",
        "_start",
        "headers",
        "keep_alive",
        "leftover",
        "on_body",
        "reason",
        "status",
        "until_close",
    )

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.on_body = self._pieces.append
        self._parser = httptools.HttpResponseParser(self)
        self.start()

    def start(self) -> None:
        """Expect the next response. llhttp parses one response after another on a keep-alive
        connection, so a connection keeps its parser (making one costs more than a whole response
        of callbacks); only this object's state starts afresh."""
        self._ended = False
        self._head_now = False
        self._informational = False
        self._reason = b""
        self._seen = 0
        self._start = b""
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.keep_alive = True
        self.leftover = False
        self.until_close = False

    def feed(self, data: bytes) -> tuple[bool, list[bytes], bool]:
        """Whether the head was completed by this read, the body bytes it brought (one piece per
        HTTP chunk, or per read), and whether the response has ended."""
        self._head_now = False
        if not self.status:
            self._seen += len(data)
            if not self._start:
                self._start = data[:80]
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._ended:
                raise self._error(exc) from None
            self.leftover = True
        if not self.status and self._seen > MAX_HEAD_BYTES:
            raise ValueError("response head larger than 64 KiB")
        pieces = self._pieces
        if pieces:
            taken = pieces.copy()
            pieces.clear()
            return self._head_now, taken, self._ended
        return self._head_now, pieces, self._ended

    def _error(self, exc: Exception) -> ValueError:
        if not self.status:
            line = self._start.split(b"\r\n", 1)[0]
            return ValueError(f"not an HTTP/1.x status line and head: {line!r} ({exc})")
        return ValueError(str(exc))

    # llhttp's callbacks, called from inside `feed_data`.

    def on_message_begin(self) -> None:
        if self._ended:
            raise ValueError("bytes after the end of the response")

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").strip()
        headers = self.headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            self._informational = True
            self.headers = {}
            self._reason = b""
            return
        headers = self.headers
        connection = headers.get("connection", "").lower()
        http11 = parser.get_http_version() != "1.0"
        self.keep_alive = "close" not in connection and (http11 or "keep-alive" in connection)
        self.status = status
        self.reason = self._reason.decode("latin-1").strip()
        self._head_now = True
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if status not in (204, 304) and not chunked and "content-length" not in headers:
            self.until_close = True
            self.keep_alive = False

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        self._ended = True


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, carrying one request at a time."""

    __slots__ = (
        "consumer",
        "last",
        "origin",
        "parser",
        "pool",
        "reusable",
        "stall",
        "transport",
        "used",
    )

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.consumer: Consumer | None = None
        self.parser = ResponseParser()
        self.reusable = True
        self.used = 0
        self.last = 0.0
        self.stall = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio's, so no isinstance check).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, consumer: Consumer, head: bytes, body: bytes, stall: float, now: float) -> None:
        """Write one request (`head` from `request_head`); its response goes to `consumer`, which
        fails with `stalled` when no byte arrives for `stall` seconds after `now`.

        The server may have closed the connection between its being made or pooled and now (the
        request's task waited to run meanwhile): the consumer then hears `lost` at once."""
        transport = self.transport
        self.used += 1
        if transport is None or transport.is_closing():
            self.reusable = False
            consumer.lost(None, now)
            return
        self.consumer = consumer
        self.parser.start()
        self.last = now
        self.stall = stall
        self.pool.watch(self)
        head += b"%d\r\n\r\n" % len(body)
        if len(body) < JOIN_BODY_BELOW:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        consumer = self.consumer
        if consumer is None:
            # Bytes nobody asked for: the connection's framing can no longer be trusted.
            self.abort()
            return
        now = time.monotonic()
        self.last = now
        parser = self.parser
        try:
            got_head, pieces, ended = parser.feed(data)
            if got_head:
                consumer.head(parser.status, parser.reason, parser.headers)
            if pieces:
                consumer.body(pieces, now)
        except Exception as exc:
            self._break(exc)
            return
        if ended:
            self.consumer = None
            if parser.leftover or not parser.keep_alive:
                self.reusable = False
            consumer.end(now)

    def _break(self, exc: Exception) -> None:
        consumer = self.consumer
        self.consumer = None
        self.abort()
        if consumer is not None:
            consumer.broken(exc)

    def stalled(self) -> None:
        consumer = self.consumer
        self.consumer = None
        self.abort()
        if consumer is not None:
            consumer.stalled()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        consumer = self.consumer
        self.consumer = None
        now = time.monotonic()
        if consumer is None:
            self.pool.forget(self)
        elif self.parser.until_close and exc is None:
            consumer.end(now)
        else:
            consumer.lost(exc, now)


class Pool:
    """Keep-alive connections per origin, at most `limit` open; a request that finds none idle and
    the limit reached waits for one to be released. TLS certificates are verified unless
    `insecure`. Use it as an async context manager, or call `close`."""

    def __init__(self, limit: int, insecure: bool = False) -> None:
        self.limit = max(1, limit)
        self.insecure = insecure
        self.open = 0
        self.closed = False
        self._idle: dict[Origin, list[Connection]] = {}
        self._members: set[Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None
        self._active: set[Connection] = set()
        self._period = WATCH_PERIOD_S
        self._watchdog: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Pool:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def acquire(self, origin: Origin, timeout: float) -> Connection:
        """An idle connection to `origin`, else a new one (connecting within `timeout` seconds),
        else wait for a release. Raises what connecting raised."""
        while True:
            if self.closed:
                raise ConnectionError("the connection pool is closed")
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if conn.reusable and conn.transport and not conn.transport.is_closing():
                    return conn
                self._drop(conn)
            if self.open < self.limit:
                return await self._connect(origin, timeout)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()
                raise

    async def _connect(self, origin: Origin, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        context = self._context() if origin.tls else None
        self.open += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context else None,
                ),
                timeout,
            )
        except BaseException:
            self.open -= 1
            self._wake()
            raise
        self._members.add(conn)
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context()
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            self._ssl = context
        return self._ssl

    def watch(self, conn: Connection) -> None:
        """Stall detection for all requests by one periodic check instead of a timer per request:
        a stall is caught within a quarter of its limit (at most `WATCH_PERIOD_S`) after it
        passes."""
        self._active.add(conn)
        self._period = min(self._period, conn.stall / 4)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._period, self._check)

    def _check(self) -> None:
        self._watchdog = None
        now = time.monotonic()
        stalled = [c for c in self._active if c.consumer is not None and now - c.last >= c.stall]
        for conn in stalled:
            self._active.discard(conn)
            conn.stalled()
        if self._active and not self.closed:
            self._watchdog = asyncio.get_running_loop().call_later(self._period, self._check)

    def release(self, conn: Connection) -> None:
        """Back to the idle list if its last response ended cleanly, else closed."""
        self._active.discard(conn)
        usable = conn.reusable and conn.transport is not None and not self.closed
        if usable and conn.consumer is None:
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            conn.consumer = None
            conn.abort()
            self._drop(conn)
        self._wake()

    def forget(self, conn: Connection) -> None:
        """An idle connection was closed by the server."""
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)
            self._drop(conn)
            self._wake()

    def _drop(self, conn: Connection) -> None:
        if conn in self._members:
            self._members.discard(conn)
            self.open -= 1

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Abort every connection; waiting requests wake up and fail."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._active.clear()
        for conn in list(self._members):
            conn.abort()
        self._members.clear()
        self._idle.clear()
        self.open = 0
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
