"""A minimal OpenAI-style streaming server for measuring the client, run as its own process.

It must cost far less CPU per request than the client it measures, so it is a bare asyncio
protocol: the HTTP request is split by hand, every response is pre-rendered bytes (vLLM-shaped
completion chunks, one token per event, each event its own HTTP chunk, then the usage chunk and
`[DONE]`), and the only per-request work is a few `transport.write` calls.

With `--delay-ms` the first token is written that long after the request arrived, and the rest
right after it or, with `--itl-ms`, one event every that many milliseconds (a shared ticker writes
the next event of every paced stream). With `--log` the server keeps, per request id (`#<n> ` at
the start of the prompt), the arrival time, the first-token write time and the last write time on
the system-wide monotonic clock, which the client process shares; `GET /stats` returns and clears
them.

Usage: python benchmarks/_sse_server.py [--delay-ms MS] [--itl-ms MS] [--tokens N]
[--write batch|each] [--cpu K] [--log]; prints `LISTENING <port>` once ready and serves until stdin
closes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from typing import Any

import orjson

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
REQUEST_ID = re.compile(rb'"#(\d+) ')


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(obj: object) -> bytes:
    return http_chunk(b"data: " + orjson.dumps(obj) + b"\n\n")


def render_events(tokens: int) -> list[bytes]:
    """The body of one response as HTTP chunks: `tokens` text events, usage, `[DONE]`, end."""
    events = []
    for i in range(tokens):
        choice = {
            "index": 0,
            "text": f" tok{i % 10}",
            "logprobs": None,
            "finish_reason": "length" if i == tokens - 1 else None,
            "stop_reason": None,
        }
        events.append(
            sse(
                {
                    "id": "cmpl-bench",
                    "object": "text_completion",
                    "created": 1700000000,
                    "model": "bench",
                    "choices": [choice],
                    "usage": None,
                }
            )
        )
    usage = {"prompt_tokens": 16, "total_tokens": 16 + tokens, "completion_tokens": tokens}
    events.append(
        sse(
            {
                "id": "cmpl-bench",
                "object": "text_completion",
                "created": 1700000000,
                "model": "bench",
                "choices": [],
                "usage": usage,
            }
        )
    )
    events.append(http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return events


class Server:
    """Settings and shared state: the rendered body, the timing log and the in-flight integral."""

    def __init__(self, delay: float, itl: float, tokens: int, each: bool, log: bool) -> None:
        self.delay = delay
        self.itl = itl
        self.each = each
        self.log = log
        events = render_events(tokens)
        self.first = events[0]
        self.rest = events[1:]
        self.rest_joined = b"".join(self.rest)
        self.timings: list[list[float]] = []
        self.paced: list[tuple[Any, ...]] = []
        self.ticker: asyncio.TimerHandle | None = None
        self.active = 0
        self.busy = 0.0
        self.changed = time.monotonic()
        self.started = self.changed

    def pace(self, conn: Connection, *stream: Any) -> None:
        """Queue a stream for the ticker, which writes the next event of every paced stream once
        per `itl` (one timer for all streams, so pacing 100 streams stays cheap)."""
        self.paced.append((conn, *stream))
        if self.ticker is None:
            self.ticker = asyncio.get_running_loop().call_later(self.itl, self.tick)

    def tick(self) -> None:
        still = []
        for conn, events, body, arrived, first in self.paced:
            transport = conn.transport
            event = next(events, None)
            if event is None or transport is None or transport.is_closing():
                conn.finish(body, arrived, first)
                continue
            transport.write(event)
            still.append((conn, events, body, arrived, first))
        self.paced = still
        self.ticker = asyncio.get_running_loop().call_later(self.itl, self.tick) if still else None

    def track(self, delta: int) -> None:
        now = time.monotonic()
        self.busy += self.active * (now - self.changed)
        self.changed = now
        self.active += delta

    def stats(self) -> bytes:
        self.track(0)
        body = orjson.dumps(
            {
                "timings": self.timings,
                "inflight_mean": self.busy / max(1e-9, self.changed - self.started),
            }
        )
        self.timings = []
        self.busy = 0.0
        self.started = self.changed
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )


class Connection(asyncio.Protocol):
    """One keep-alive client connection; requests are answered in order, one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.respond(head, body)

    def respond(self, head: bytes, body: bytes) -> None:
        server = self.server
        transport = self.transport
        assert transport is not None
        if head.startswith(b"get /stats"):
            transport.write(server.stats())
            return
        arrived = time.monotonic()
        server.track(1)
        transport.write(HEAD)
        if server.delay:
            asyncio.get_running_loop().call_later(server.delay, self.stream, body, arrived)
        else:
            self.stream(body, arrived)

    def stream(self, body: bytes, arrived: float) -> None:
        server = self.server
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            server.track(-1)
            return
        transport.write(server.first)
        first = time.monotonic()
        if server.itl:
            server.pace(self, iter(server.rest), body, arrived, first)
            return
        if server.each:
            for event in server.rest:
                transport.write(event)
        else:
            transport.write(server.rest_joined)
        self.finish(body, arrived, first)

    def finish(self, body: bytes, arrived: float, first: float) -> None:
        server = self.server
        server.track(-1)
        if server.log:
            match = REQUEST_ID.search(body)
            if match:
                server.timings.append([int(match[1]), arrived, first, time.monotonic()])


async def serve(args: argparse.Namespace) -> None:
    server = Server(
        args.delay_ms / 1000.0, args.itl_ms / 1000.0, args.tokens, args.write == "each", args.log
    )
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(server), "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    listener.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--delay-ms", type=float, default=0.0, help="first-token delay (ms)")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="gap between later events (ms)")
    parser.add_argument("--tokens", type=int, default=100, help="text events per response")
    parser.add_argument("--write", choices=("batch", "each"), default="batch", help="write mode")
    parser.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    parser.add_argument("--log", action="store_true", help="keep per-request timings for /stats")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
