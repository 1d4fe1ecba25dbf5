"""One streaming completion request in, one `RequestRecord` out.

This is the load generator's hot path, and a benchmark that spends more time per request than the
server measures itself. Streams read through `aiohttp.ClientSession.post` cost about twice the CPU
of a bare asyncio reader (request and response objects, a writer task, a read timer and a task
wake-up per network read; `benchmarks/client_speed.py` measures all three), so streaming requests
run on a small HTTP/1.1 keep-alive pool of asyncio protocols instead:

- the request is a pre-rendered head plus the orjson body, written without copying the body;
- each network read is handled in the protocol callback itself: it is timestamped once (the time
  the bytes reached the client, not the time a task got round to them), de-chunked, split into
  events by `SSEParser` and decoded with orjson, touching only the fields the metrics need, with
  the per-chunk and per-event work of a whole read done in C loops (`split`, `map`) where exact;
- the request's task sleeps on one future until the response ends, and one periodic check of the
  pool enforces the stall limit of every request.

`make_session` still returns an `aiohttp.ClientSession` (discovery, probes and metrics scraping use
it as one); the streaming pool rides on its connector and is closed with it.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import compress, repeat
from operator import and_, getitem, not_
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from tmesh import __version__
from tmesh.bench.load.sse import SSEParser
from tmesh.results.records import RequestPlan, RequestRecord
from tmesh.text import scrub

APIS = ("completions", "chat")

# Long SSE lines and 32k-token bodies must never hit a buffer limit: aiohttp's default 64 KiB
# stream limit collapsed vLLM's client above 50k-token contexts (vLLM issue 39963). The streaming
# pool has no such limit (asyncio reads up to 256 KiB at a time and the SSE parser grows as
# needed); the session gets a large one for everything else.
READ_BUFSIZE = 4 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
ERROR_BODY_LIMIT = 4096
DETAIL_CHARS = 200
# Below this the head and body go out in one write; above it the body is written on its own so
# it is never copied (the transport only copies what the kernel did not take).
JOIN_BODY_BELOW = 16 * 1024

_SECRET_HEADERS = ("authorization", "api-key", "x-api-key")
_WHITESPACE = re.compile(r"\s+")
_SECONDS = re.compile(r"\d+(\.\d+)?")
_FORBIDDEN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))


@dataclass(frozen=True)
class ClientConfig:
    """What every request of a run shares. `request_timeout` is a stall limit in seconds: a request
    fails with `timeout` when no byte arrives for that long in any phase (connect, waiting for the
    first byte, between stream reads), however long the whole stream takes.

    `ignore_eos` also sends `min_tokens = max_tokens` (vLLM accepts both) so every answer has the
    requested length; `extra_body` is merged last, so it can override or remove (`None`) either.
    """

    base_url: str
    api: str
    model: str
    headers: Mapping[str, str]
    max_tokens: int
    request_timeout: float
    ignore_eos: bool = True
    extra_body: Mapping[str, Any] | None = None
    _target: tuple[str, int, bool] = field(init=False, repr=False, compare=False)
    _head: bytes = field(init=False, repr=False, compare=False)
    _body: dict[str, Any] = field(init=False, repr=False, compare=False)
    _secrets: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, not {self.api!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, not {self.max_tokens}")
        if self.request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, not {self.request_timeout}")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, not {self.base_url!r}")
        tls = parts.scheme == "https"
        target = (parts.hostname, parts.port or (443 if tls else 80), tls)
        endpoint = "/chat/completions" if self.api == "chat" else "/completions"
        path = parts.path.rstrip("/") + endpoint
        host = parts.netloc.rpartition("@")[2]
        init = object.__setattr__
        init(self, "_target", target)
        init(self, "_head", _request_head(path, host, self.headers))
        init(self, "_body", _body_template(self))
        init(self, "_secrets", _secrets(self.headers))


def _request_head(path: str, host: str, user: Mapping[str, str]) -> bytes:
    """Everything before the Content-Length value. Identity encoding: a compressing proxy would
    buffer the stream and blur every timestamp."""
    headers = {
        "content-type": ("Content-Type", "application/json"),
        "accept": ("Accept", "text/event-stream"),
        "accept-encoding": ("Accept-Encoding", "identity"),
        "user-agent": ("User-Agent", f"tmesh-bench/{__version__}"),
    }
    for name, value in user.items():
        if any(c in name + value for c in "\r\n") or ":" in name:
            raise ValueError(f"header {name!r} contains a line break or a colon in its name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise ValueError(f"header {name!r} is set by the client itself")
        headers[name.lower()] = (name, value)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.values()]
    try:
        return ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("header names and values must be Latin-1 text") from None


def _body_template(config: ClientConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": config.model,
        "max_tokens": config.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if config.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = config.max_tokens
    for key, value in (config.extra_body or {}).items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Credential values that must never reach `error_detail` (a server may echo them back)."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS and value:
            scheme, _, token = value.partition(" ")
            found.append(token.strip() if token.strip() and scheme.isalpha() else value)
    return tuple(sorted(found, key=len, reverse=True))


def request_body(config: ClientConfig, prompt: str) -> bytes:
    """The JSON body of one request, serialised once; the prompt goes in as the user message."""
    body = dict(config._body)
    if config.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return orjson.dumps(body)


class StreamingConnector(aiohttp.TCPConnector):
    """aiohttp's connector for the session's ordinary requests, plus the streaming pool, which it
    closes when the session closes."""

    def __init__(self, limit: int, insecure: bool) -> None:
        super().__init__(limit=limit, limit_per_host=0, ssl=not insecure)
        self.streams = _Pool(limit, insecure)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        self.streams.close()
        return super().close(*args, **kwargs)


def make_session(max_inflight: int, insecure: bool = False) -> aiohttp.ClientSession:
    """One session for the whole run; call it from a running event loop.

    Both pools hold `max_inflight` connections, so every in-flight request has its own keep-alive
    connection and none waits for a socket. Cookies are not kept: a benchmark's requests must be
    independent of each other. TLS certificates are verified unless `insecure`.
    """
    return aiohttp.ClientSession(
        connector=StreamingConnector(max(1, max_inflight), insecure),
        cookie_jar=aiohttp.DummyCookieJar(),
        read_bufsize=READ_BUFSIZE,
        max_line_size=MAX_HEAD_BYTES,
        max_field_size=MAX_HEAD_BYTES,
        timeout=aiohttp.ClientTimeout(total=None),
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds)


def one_line(text: str, secrets: tuple[str, ...] = (), limit: int = DETAIL_CHARS) -> str:
    """A short single-line detail with every credential masked (`secrets.scrub`)."""
    return _WHITESPACE.sub(" ", scrub(text, secrets)).strip()[:limit]


async def send_request(
    session: aiohttp.ClientSession, config: ClientConfig, plan: RequestPlan, origin: float
) -> RequestRecord:
    """Send one streaming request and measure it. Never raises except `CancelledError`.

    `t0` is taken after a connection is in hand, just before the request is written, so waiting
    for a pooled connection is not counted as server latency. A request whose reused keep-alive
    connection turns out to be closed by the server before any answer is sent once more on a
    fresh connection: that failure is the connection's age, not the server's answer.
    """
    connector = session.connector
    if not isinstance(connector, StreamingConnector):
        raise TypeError("send_request needs a session made by make_session")
    pool = connector.streams
    body = request_body(config, plan.prompt)
    head = config._head + b"%d\r\n\r\n" % len(body)
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        exchange = _Exchange(config, loop, time.monotonic())
        try:
            conn = await pool.acquire(config._target, config.request_timeout)
        except asyncio.TimeoutError:
            exchange.fail("timeout", f"no connection within {config.request_timeout:g} s")
            break
        except Exception as exc:
            exchange.fail("connect", f"{type(exc).__name__}: {exc}")
            break
        reused = conn.used > 0
        try:
            exchange.start(conn, head, body)
            await exchange.done
        finally:
            pool.release(conn, exchange)
        if not (attempt == 0 and reused and exchange.retryable):
            break
    return exchange.record(plan, origin)


class _Failure(Exception):
    """A request outcome that is not a success, raised inside response parsing to leave it."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class _Exchange:
    """One request and its response: the status, the stream's timings and counts, or a failure.

    Its callbacks run inside the connection's `data_received`, so everything here is synchronous;
    `done` resolves when the response has ended or failed.
    """

    __slots__ = (
        "config",
        "conn",
        "detail",
        "done",
        "error",
        "error_body",
        "last",
        "parser",
        "received",
        "retry_after",
        "sse",
        "status",
        "stream",
        "t0",
        "t_end",
    )

    def __init__(self, config: ClientConfig, loop: asyncio.AbstractEventLoop, t0: float) -> None:
        self.config = config
        self.done: asyncio.Future[None] = loop.create_future()
        self.conn: _Connection | None = None
        self.t0 = t0
        self.last = t0
        self.t_end = 0.0
        self.received = False
        self.status: int | None = None
        self.sse = False
        self.parser = SSEParser()
        self.stream = StreamState(config.api == "chat")
        self.error_body: list[bytes] = []
        self.error: str | None = None
        self.detail: str | None = None
        self.retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.error == "connect" and not self.received

    def start(self, conn: _Connection, head: bytes, body: bytes) -> None:
        self.conn = conn
        conn.pool.watch(self)
        self.t0 = self.last = time.monotonic()
        conn.send(self, head, body)

    def stalled(self) -> None:
        """No byte for `request_timeout`: a timeout, unless `[DONE]` was already seen and only
        the end of the body is missing."""
        if self.stream.done_at:
            self.finish(self.stream.done_at)
        else:
            self.fail("timeout", f"no data for {self.config.request_timeout:g} s")
        if self.conn is not None:
            self.conn.abort()

    def head(self, status: int, reason: str, headers: dict[str, str]) -> None:
        self.received = True
        self.status = status
        if 200 <= status < 300:
            encoding = headers.get("content-encoding", "identity").lower()
            if encoding != "identity":
                raise _Failure(
                    "malformed", f"stream compressed with {encoding} although identity was asked"
                )
            self.sse = True
            return
        if status == 429:
            self.retry_after = parse_retry_after(headers.get("retry-after"))
        self.error_body.append(f"HTTP {status} {reason}: ".encode())

    def body(self, pieces: list[bytes], now: float) -> None:
        """Body bytes of one read (one piece per HTTP chunk, or the whole read)."""
        if self.sse:
            parser = self.parser
            self.stream.add(parser.feed_pieces(pieces), now)
            if parser.unknown_line is not None:
                line = _text(parser.unknown_line)
                raise _Failure("malformed", f"SSE line without a data: field: {line}")
        elif sum(map(len, self.error_body)) < ERROR_BODY_LIMIT:
            self.error_body.extend(pieces)

    def end(self, now: float) -> None:
        """The response body ended. Any status other than 2xx, 429 and 5xx (a redirect, which is
        not followed, or a 4xx) is the caller's problem and counts as `http_4xx`."""
        if not self.sse:
            status = self.status or 0
            kind = "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
            self.fail(kind, b"".join(self.error_body).decode("utf-8", "replace"))
            return
        stream = self.stream
        if not (stream.done_at or stream.usage or stream.finished):
            self.fail("stream_cut", f"stream ended before [DONE] after {stream.events} text events")
        elif not stream.events:
            self.fail("malformed", "the stream ended without any generated text")
        else:
            self.finish(stream.done_at or now)

    def lost(self, exc: BaseException | None, now: float) -> None:
        """The connection closed (or failed) before the response ended."""
        reason = f"{type(exc).__name__}: {exc}" if exc else "connection closed by the server"
        if not self.received:
            self.fail("connect", reason)
        elif not self.sse or self.stream.done_at or self.stream.usage:
            self.end(now)
        else:
            self.fail("stream_cut", f"{reason} after {self.stream.events} text events")

    def finish(self, t_end: float) -> None:
        if not self.done.done():
            self.t_end = t_end
            self.done.set_result(None)

    def fail(self, kind: str, detail: str) -> None:
        if not self.done.done():
            self.error = kind
            self.detail = one_line(detail, self.config._secrets)
            self.t_end = time.monotonic()
            self.done.set_result(None)

    def record(self, plan: RequestPlan, origin: float) -> RequestRecord:
        record = RequestRecord(
            index=plan.index,
            context_id=plan.context_id,
            question_id=plan.question_id,
            visit=plan.visit,
            rotation=plan.rotation,
            t0=self.t0 - origin,
            t_end=self.t_end - origin,
            prompt_tokens=plan.expected_prompt_tokens,
            planned_prompt_tokens=plan.expected_prompt_tokens,
            status=self.status,
            retry_after=self.retry_after,
        )
        if self.error is not None:
            record.error = self.error
            record.error_detail = self.detail
            return record
        stream = self.stream
        record.t_first = stream.t_first - origin
        record.t_last = stream.t_last - origin
        usage = stream.usage
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            record.usage_reported = True
            record.completion_tokens = usage["completion_tokens"]
            if isinstance(usage.get("prompt_tokens"), int):
                record.prompt_tokens = usage["prompt_tokens"]
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
                record.cached_tokens = details["cached_tokens"]
        else:
            record.completion_tokens = stream.events
        return record


class StreamState:
    """What the events of one stream said so far: text events and when, finish, usage, `[DONE]`.

    `add` runs once per read and keeps per-event state in local variables. Token streams repeat
    one event shape with only the text changing, so after an event has been decoded in full its
    bytes around the text's JSON string become a template: a later event that is the same prefix,
    one JSON string and the same suffix has, by the grammar, every other field equal to the
    template's, and only that string is decoded. The template is taken only from an event whose
    one non-empty text field is that string and which has no finish reason, usage or error, and only
    after re-decoding it with a marker string in the slot proved the slot is that field. Anything
    else takes the full decode, so the result is exactly what decoding every event would give.
    """

    __slots__ = (
        "_learned",
        "_prefix",
        "_suffix",
        "chat",
        "done_at",
        "events",
        "finished",
        "t_first",
        "t_last",
        "usage",
    )

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.done_at = 0.0
        self.events = 0
        self.finished = False
        self.t_first = 0.0
        self.t_last = 0.0
        self.usage: Any = None
        self._prefix = b""
        self._suffix = b""
        self._learned = 0

    def add(self, payloads: list[bytes], now: float) -> None:
        """Raises `_Failure` for an event that is not JSON, has no usable shape or is an error."""
        texts = 0
        for at, payload in enumerate(payloads):
            if self._prefix:
                texts += self._batch(payloads[at:], now)
                break
            texts += self._one(payload, now)
        if texts:
            if not self.events:
                self.t_first = now
            self.events += texts
            self.t_last = now

    def _batch(self, payloads: list[bytes], now: float) -> int:
        """The events of a read that fit the template, checked and decoded in C loops (`map`),
        the others one by one. Within one read only the count of text events and the last usage
        depend on the events, and fitting events have no usage, so the split keeps the result."""
        prefix, suffix = self._prefix, self._suffix
        fits = list(
            map(
                and_,
                map(bytes.startswith, payloads, repeat(prefix)),
                map(bytes.endswith, payloads, repeat(suffix)),
            )
        )
        fitting, others = payloads, []
        if False in fits:
            fitting = list(compress(payloads, fits))
            others = list(compress(payloads, map(not_, fits)))
        middle = slice(len(prefix), -len(suffix) or None)
        try:
            values = list(map(orjson.loads, map(getitem, fitting, repeat(middle))))
        except orjson.JSONDecodeError:
            values = [None]
        if set(map(type, values)) - {str}:
            return sum(self._one(payload, now) for payload in payloads)
        return len(values) - values.count("") + sum(self._one(p, now) for p in others)

    def _one(self, payload: bytes, now: float) -> int:
        """One event: `[DONE]`, a fit to the template, or a full decode."""
        if payload == b"[DONE]":
            self.done_at = now
            return 0
        prefix, suffix = self._prefix, self._suffix
        if prefix and payload.startswith(prefix) and payload.endswith(suffix):
            try:
                text = orjson.loads(payload[len(prefix) : len(payload) - len(suffix)])
            except orjson.JSONDecodeError:
                text = None
            if type(text) is str:
                return 1 if text else 0
        return 1 if self._decode(payload) else 0

    def _decode(self, payload: bytes) -> bool:
        """Full decode of one event; returns whether it carried generated text. An error object
        (`{"error": …}`, or vLLM's `{"object": "error", …}`) is an event without choices."""
        try:
            event = orjson.loads(payload)
            choices = event.get("choices")
            if not choices:
                if "error" in event or event.get("object") == "error":
                    raise _Failure("malformed", "error in stream: " + _text(payload))
                usage = event.get("usage")
                if usage:
                    self.usage = usage
                return False
            choice = choices[0]
            holder = (choice.get("delta") or {}) if self.chat else choice
            fields = _CHAT_TEXT if self.chat else _COMPLETION_TEXT
            found = [name for name in fields if holder.get(name)]
            usage = event.get("usage")
            if usage:
                self.usage = usage
            if choice.get("finish_reason"):
                self.finished = True
            elif len(found) == 1 and not usage and self._learned < 4:
                self._learn(payload, event, holder, found[0])
            return bool(found)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError) as exc:
            raise _Failure("malformed", f"bad event ({exc}): {_text(payload)}") from exc

    def _learn(self, payload: bytes, event: Any, holder: Any, name: str) -> None:
        """At most a few times per stream: a shape that keeps changing is not worth learning."""
        self._learned += 1
        value = holder[name]
        literal = orjson.dumps(value) if type(value) is str else b""
        key = payload.find(b'"' + name.encode() + b'"')
        at = payload.find(literal, key) if literal and key >= 0 else -1
        if at < 0:
            return
        prefix, suffix = payload[:at], payload[at + len(literal) :]
        holder[name] = "#"
        expected = orjson.dumps(event)
        holder[name] = value
        try:
            probe = orjson.dumps(orjson.loads(prefix + b'"#"' + suffix))
        except orjson.JSONDecodeError:
            probe = b""
        if probe == expected:
            self._prefix, self._suffix = prefix, suffix


_COMPLETION_TEXT = ("text",)
_CHAT_TEXT = ("content", "reasoning_content", "reasoning")


def _text(raw: bytes) -> str:
    return raw[:DETAIL_CHARS].decode("utf-8", "replace")


class ChunkedDecoder:
    """Incremental `Transfer-Encoding: chunked` decoder: `feed` returns the data bytes completed by
    one read and whether the body has ended. A whole chunk in a read costs one `find` and two
    slices; a chunk cut by a read boundary is carried over. Extensions and trailers are skipped;
    bytes after the end stay in `leftover`. Bad framing raises `ValueError`."""

    __slots__ = ("_buffer", "_remaining", "_state", "leftover")

    SIZE, DATA, CRLF, TRAILER = range(4)

    def __init__(self) -> None:
        self._buffer = b""
        self._remaining = 0
        self._state = self.SIZE
        self.leftover = b""

    def feed(self, data: bytes) -> tuple[list[bytes], bool]:
        if self._state == 0 and not self._buffer:
            whole = _whole_chunks(data)
            if whole is not None:
                return whole
        buffer = self._buffer + data if self._buffer else data
        pieces: list[bytes] = []
        state = self._state
        pos = 0
        end = len(buffer)
        while pos < end:
            if state == 0:  # SIZE: a size line, then (fast path) the whole chunk if it is here
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > 1024:
                        raise ValueError("chunk size line too long")
                    break
                try:
                    size = int(buffer[pos:eol], 16)
                except ValueError:
                    size = int(buffer[pos:eol].split(b";", 1)[0], 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                pos = eol + 2
                if size == 0:
                    state = 3
                    continue
                stop = pos + size
                if stop + 2 <= end:
                    if not buffer.startswith(b"\r\n", stop):
                        raise ValueError("chunk not followed by CRLF")
                    pieces.append(buffer[pos:stop])
                    pos = stop + 2
                    continue
                self._remaining = size
                state = 1
            elif state == 1:  # DATA: the rest of a chunk that a read boundary cut
                take = min(self._remaining, end - pos)
                pieces.append(buffer[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    state = 2
            elif state == 2:  # CRLF after a chunk's data
                if end - pos < 2:
                    break
                if buffer[pos : pos + 2] != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
                pos += 2
                state = 0
            else:  # TRAILER lines after the last chunk, up to an empty line
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > MAX_HEAD_BYTES:
                        raise ValueError("trailer too long")
                    break
                if eol == pos:
                    self.leftover = buffer[pos + 2 :]
                    self._buffer = b""
                    self._state = state
                    return pieces, True
                pos = eol + 2
        self._state = state
        self._buffer = buffer[pos:] if pos < end else b""
        return pieces, False


def _whole_chunks(data: bytes) -> tuple[list[bytes], bool] | None:
    """The usual read, whole chunks only, de-chunked without a Python loop per chunk: split at
    every CRLF and check that each size field equals the length of the field after it. A CRLF
    inside chunk data cuts that data short of its size, so the check fails and the general loop
    takes over, as it does for extensions, trailers, partial chunks and bytes after the end.
    """
    parts = data.split(b"\r\n")
    if len(parts) % 2 == 0 or parts[-1]:
        return None
    pieces = parts[1:-1:2]
    try:
        if list(map(len, pieces)) != list(map(int, parts[0:-1:2], repeat(16))):
            return None
    except ValueError:
        return None
    if b"" not in pieces:
        return pieces, False
    if pieces.index(b"") != len(pieces) - 1:
        return None
    pieces.pop()
    return pieces, True


def parse_head(head: bytes) -> tuple[int, str, dict[str, str], bool]:
    """Status, reason, headers (lower-case names, repeated ones joined with ", ") and whether the
    response is HTTP/1.1 or later. Raises `ValueError` for anything that is not an HTTP response."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"bad header line: {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(code), reason.strip(), headers, version != "HTTP/1.0"


_HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _IDLE = range(5)


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection. It frames responses itself (status line, headers, then a
    chunked, sized or close-delimited body) and hands body bytes to the current exchange."""

    __slots__ = (
        "_buffer",
        "_chunks",
        "_keep_alive",
        "_mode",
        "_remaining",
        "exchange",
        "key",
        "pool",
        "reusable",
        "transport",
        "used",
    )

    def __init__(self, pool: _Pool, key: tuple[str, int, bool]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.reusable = True
        self.used = 0
        self._mode = _IDLE
        self._buffer = b""
        self._chunks = ChunkedDecoder()
        self._remaining = 0
        self._keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, exchange: _Exchange, head: bytes, body: bytes) -> None:
        """A connection can be lost between being made and being used (the server closed it
        while the request's task waited to resume): then the request fails as `connect`."""
        transport = self.transport
        self.used += 1
        if transport is None or transport.is_closing():
            self.reusable = False
            exchange.lost(None, time.monotonic())
            return
        self.exchange = exchange
        self._mode = _HEAD
        self._buffer = b""
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
        exchange = self.exchange
        if exchange is None or self._mode == _IDLE:
            self.abort()
            return
        now = time.monotonic()
        exchange.last = now
        try:
            if self._mode == _CHUNKED:
                self._chunked(data, now)
            else:
                self._other(data, now)
        except _Failure as failure:
            self._fail(failure.kind, failure.detail)
        except Exception as exc:
            self._fail("malformed", f"bad HTTP response ({type(exc).__name__}: {exc})")

    def _chunked(self, data: bytes, now: float) -> None:
        pieces, ended = self._chunks.feed(data)
        if pieces:
            assert self.exchange is not None
            self.exchange.body(pieces, now)
        if ended:
            self._complete(self._chunks.leftover, now)

    def _other(self, data: bytes, now: float) -> None:
        exchange = self.exchange
        assert exchange is not None
        mode = self._mode
        if mode == _HEAD:
            data = self._head(data, now)
            mode = self._mode
            if not data and mode != _LENGTH:
                return
        if mode == _CHUNKED:
            self._chunked(data, now)
        elif mode == _LENGTH:
            take = data[: self._remaining]
            self._remaining -= len(take)
            if take:
                exchange.body([take], now)
            if not self._remaining:
                self._complete(data[len(take) :], now)
        elif mode == _UNTIL_CLOSE:
            exchange.body([data], now)

    def _head(self, data: bytes, now: float) -> bytes:
        """Collect the response head; returns the body bytes that came with it."""
        buffer = self._buffer + data
        cut = buffer.find(b"\r\n\r\n")
        if cut < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ValueError("response head larger than 64 KiB")
            self._buffer = buffer
            return b""
        self._buffer = b""
        status, reason, headers, http11 = parse_head(buffer[:cut])
        rest = buffer[cut + 4 :]
        if 100 <= status < 200:
            return self._head(rest, now) if rest else b""
        connection = headers.get("connection", "").lower()
        self._keep_alive = "close" not in connection and (http11 or "keep-alive" in connection)
        assert self.exchange is not None
        self.exchange.head(status, reason, headers)
        if status in (204, 304):
            self._mode = _LENGTH
            self._remaining = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode = _CHUNKED
            self._chunks = ChunkedDecoder()
        elif "content-length" in headers:
            self._mode = _LENGTH
            self._remaining = int(headers["content-length"])
            if self._remaining < 0:
                raise ValueError("negative Content-Length")
        else:
            self._mode = _UNTIL_CLOSE
            self._keep_alive = False
        return rest

    def _complete(self, leftover: bytes, now: float) -> None:
        """The response ended; extra bytes mean the connection can no longer be trusted."""
        exchange = self.exchange
        assert exchange is not None
        self._mode = _IDLE
        self.exchange = None
        if leftover or not self._keep_alive:
            self.reusable = False
        exchange.end(now)

    def _fail(self, kind: str, detail: str) -> None:
        exchange = self.exchange
        self.exchange = None
        self._mode = _IDLE
        self.abort()
        if exchange is not None:
            exchange.fail(kind, detail)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self.transport = None
        exchange = self.exchange
        self.exchange = None
        mode = self._mode
        self._mode = _IDLE
        now = time.monotonic()
        if exchange is None:
            self.pool.forget(self)
        elif mode == _UNTIL_CLOSE and exc is None:
            exchange.end(now)
        else:
            exchange.lost(exc, now)


class _Pool:
    """Keep-alive connections per (host, port, tls), at most `limit` open; a request that finds
    none idle and the limit reached waits for one to be released."""

    def __init__(self, limit: int, insecure: bool) -> None:
        self.limit = limit
        self.insecure = insecure
        self.open = 0
        self.closed = False
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._members: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None
        self._active: set[_Exchange] = set()
        self._period = 1.0
        self._watchdog: asyncio.TimerHandle | None = None

    async def acquire(self, key: tuple[str, int, bool], timeout: float) -> _Connection:
        while True:
            if self.closed:
                raise ConnectionError("the session is closed")
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if conn.reusable and conn.transport and not conn.transport.is_closing():
                    return conn
                self._drop(conn)
            if self.open < self.limit:
                return await self._connect(key, timeout)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()
                raise

    async def _connect(self, key: tuple[str, int, bool], timeout: float) -> _Connection:
        host, port, tls = key
        loop = asyncio.get_running_loop()
        context = self._context() if tls else None
        self.open += 1
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, key),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context else None,
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

    def watch(self, exchange: _Exchange) -> None:
        """Stall detection for all requests by one periodic check instead of a timer per request:
        a stall is caught within a quarter of the limit (at most 1 s) after it passes."""
        self._active.add(exchange)
        self._period = min(self._period, exchange.config.request_timeout / 4)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._period, self._check)

    def _check(self) -> None:
        self._watchdog = None
        now = time.monotonic()
        stalled = [
            e
            for e in self._active
            if now - e.last >= e.config.request_timeout and not e.done.done()
        ]
        for exchange in stalled:
            self._active.discard(exchange)
            exchange.stalled()
        if self._active and not self.closed:
            self._watchdog = asyncio.get_running_loop().call_later(self._period, self._check)

    def release(self, conn: _Connection, exchange: _Exchange) -> None:
        """Back to the idle list if its last response ended cleanly, else closed."""
        self._active.discard(exchange)
        usable = conn.reusable and conn.transport is not None and not self.closed
        if usable and conn.exchange is None:
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            conn.exchange = None
            conn.abort()
            self._drop(conn)
        self._wake()

    def forget(self, conn: _Connection) -> None:
        """An idle connection was closed by the server."""
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
            self._drop(conn)
            self._wake()

    def _drop(self, conn: _Connection) -> None:
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
