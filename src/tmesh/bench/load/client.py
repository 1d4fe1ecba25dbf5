"""One streaming completion request in, one `RequestRecord` out.

This is the step the load loop repeats, on top of the HTTP pool (`http`) and the stream reader
(`stream`): it renders a run's request once (`ClientConfig`), writes each request on a pooled
connection, reads the response as an `http.Consumer`, and turns what happened into a record. Every
way a request can go wrong becomes an error kind of the record, never an exception, because a
benchmark must count a server's failures, not stop at the first one.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from tmesh import __version__
from tmesh.bench.endpoint.openai import (
    generation_body,
    route,
    usage_counts,
    with_messages,
    with_prompt,
)
from tmesh.bench.load.http import Connection, Origin, Pool, request_head, split_url
from tmesh.bench.load.stream import StreamError, StreamState
from tmesh.results.records import APIS, Api, ErrorKind, RequestPlan, RequestRecord
from tmesh.text import one_line

ERROR_BODY_LIMIT = 4096

_SECRET_HEADERS = ("authorization", "api-key", "x-api-key")
_SECONDS = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True)
class ClientConfig:
    """What every request of a run shares. `request_timeout` is a stall limit in seconds: a request
    fails with `timeout` when no byte arrives for that long in any phase (connect, waiting for the
    first byte, between stream reads), however long the whole stream takes.

    `ignore_eos` asks for answers of exactly `max_tokens` (see `openai.generation_body`);
    `extra_body` is merged last, so it can override or remove (`None`) any field.
    """

    base_url: str
    api: Api
    model: str
    headers: Mapping[str, str]
    max_tokens: int
    request_timeout: float
    ignore_eos: bool = True
    extra_body: Mapping[str, Any] | None = None
    _target: Origin = field(init=False, repr=False, compare=False)
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
        origin, path, host = split_url(self.base_url)
        path = path.rstrip("/") + route(self.api)
        init = object.__setattr__
        init(self, "_target", origin)
        init(self, "_head", request_head("POST", path, host, _headers(self.headers)))
        init(self, "_body", _body_template(self))
        init(self, "_secrets", _secrets(self.headers))


def _headers(user: Mapping[str, str]) -> list[tuple[str, str]]:
    """The client's headers, then the user's (which replace one of the same name in place).
    Identity encoding: a compressing proxy would buffer the stream and blur every timestamp."""
    headers = {
        "content-type": ("Content-Type", "application/json"),
        "accept": ("Accept", "text/event-stream"),
        "accept-encoding": ("Accept-Encoding", "identity"),
        "user-agent": ("User-Agent", f"tmesh-bench/{__version__}"),
    }
    for name, value in user.items():
        headers[name.lower()] = (name, value)
    return list(headers.values())


def _body_template(config: ClientConfig) -> dict[str, Any]:
    body = generation_body(
        config.api, config.model, config.max_tokens, stream=True, ignore_eos=config.ignore_eos
    )
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


def request_body(config: ClientConfig, prompt: str, max_tokens: int | None = None) -> bytes:
    """The JSON body of one request, serialised once; `max_tokens` replaces the run's output
    length (and its `min_tokens` with it)."""
    request = with_prompt(config._body, config.api, prompt)
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
        if "min_tokens" in request:
            request["min_tokens"] = max_tokens
    return orjson.dumps(request)


def plan_body(config: ClientConfig, plan: RequestPlan) -> bytes:
    """The body of a plan: its conversation's messages in chat when it has them, else its
    prompt."""
    if plan.messages is not None and config.api == "chat":
        return orjson.dumps(with_messages(config._body, plan.messages))
    return request_body(config, plan.prompt, plan.max_tokens)


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


async def send_request(
    pool: Pool, config: ClientConfig, plan: RequestPlan, origin: float
) -> RequestRecord:
    """Send one streaming request and measure it. Never raises except `CancelledError`.

    `t0` is taken after a connection is in hand, just before the request is written, so waiting
    for a pooled connection is not counted as server latency. A request whose reused keep-alive
    connection turns out to be closed by the server before any answer is sent once more on a
    fresh connection: that failure is the connection's age, not the server's answer.
    """
    exchange = await _exchange(pool, config, plan, capture=False)
    return exchange.record(plan, origin)


async def send_turn(
    pool: Pool, config: ClientConfig, plan: RequestPlan, origin: float
) -> tuple[RequestRecord, str]:
    """`send_request`, also keeping the answer's text: a conversation sends it back in its next
    turn."""
    exchange = await _exchange(pool, config, plan, capture=True)
    return exchange.record(plan, origin), "".join(exchange.stream.answer or ())


async def _exchange(
    pool: Pool, config: ClientConfig, plan: RequestPlan, capture: bool
) -> _Exchange:
    if not isinstance(pool, Pool):
        raise TypeError(f"send_request needs a Pool, not {type(pool).__name__}")
    body = plan_body(config, plan)
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        exchange = _Exchange(config, loop, time.monotonic(), capture)
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
            exchange.start(conn, body)
            await exchange.done
        finally:
            pool.release(conn)
        if not (attempt == 0 and reused and exchange.retryable):
            break
    return exchange


class _Failure(Exception):
    """A response that cannot be a success, raised from `head` to stop reading it."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind: ErrorKind = kind
        self.detail = detail


class _Exchange:
    """One request and its response, as the `http.Consumer` of its connection: the status, the
    stream's timings and counts, or a failure. `done` resolves when the outcome is known."""

    __slots__ = (
        "config",
        "detail",
        "done",
        "error",
        "error_body",
        "received",
        "retry_after",
        "sse",
        "status",
        "stream",
        "t0",
        "t_end",
    )

    def __init__(
        self, config: ClientConfig, loop: asyncio.AbstractEventLoop, t0: float, capture: bool
    ) -> None:
        self.config = config
        self.done: asyncio.Future[None] = loop.create_future()
        self.t0 = t0
        self.t_end = 0.0
        self.received = False
        self.status: int | None = None
        self.sse = False
        self.stream = StreamState(config.api == "chat", capture)
        self.error_body: list[bytes] = []
        self.error: ErrorKind | None = None
        self.detail: str | None = None
        self.retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        return self.error == "connect" and not self.received

    def start(self, conn: Connection, body: bytes) -> None:
        self.t0 = now = time.monotonic()
        conn.send(self, self.config._head, body, self.config.request_timeout, now)

    def head(self, status: int, reason: str, headers: Mapping[str, str]) -> None:
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
        if self.sse:
            self.stream.feed(pieces, now)
        elif sum(map(len, self.error_body)) < ERROR_BODY_LIMIT:
            self.error_body.extend(pieces)

    def end(self, now: float) -> None:
        """The response body ended. Any status other than 2xx, 429 and 5xx (a redirect, which is
        not followed, or a 4xx) is the caller's problem and counts as `http_4xx`."""
        if not self.sse:
            status = self.status or 0
            kind: ErrorKind = (
                "http_429" if status == 429 else "http_5xx" if status >= 500 else "http_4xx"
            )
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

    def broken(self, exc: Exception) -> None:
        if isinstance(exc, _Failure):
            self.fail(exc.kind, exc.detail)
        elif isinstance(exc, StreamError):
            self.fail("malformed", str(exc))
        else:
            self.fail("malformed", f"bad HTTP response ({type(exc).__name__}: {exc})")

    def stalled(self) -> None:
        """No byte for `request_timeout`: a timeout, unless `[DONE]` was already seen and only
        the end of the body is missing."""
        if self.stream.done_at:
            self.finish(self.stream.done_at)
        else:
            self.fail("timeout", f"no data for {self.config.request_timeout:g} s")

    def finish(self, t_end: float) -> None:
        if not self.done.done():
            self.t_end = t_end
            self.done.set_result(None)

    def fail(self, kind: ErrorKind, detail: str) -> None:
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
            session=plan.session,
            turn=plan.turn,
        )
        if self.error is not None:
            record.error = self.error
            record.error_detail = self.detail
            return record
        stream = self.stream
        record.t_first = stream.t_first - origin
        record.t_last = stream.t_last - origin
        counts = usage_counts(stream.usage)
        if counts is None:
            record.completion_tokens = stream.events
            return record
        record.usage_reported = True
        record.completion_tokens, prompt, record.cached_tokens = counts
        if prompt is not None:
            record.prompt_tokens = prompt
        return record
