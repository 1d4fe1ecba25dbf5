"""A keep-alive HTTP/1.1 OpenAI server on a loopback port that closes connections where it hurts.

Real servers drop connections at every point of an exchange: an idle keep-alive connection closed
just as the client reuses it, a response cut before its head or inside an HTTP chunk, a connection
closed right after a complete response, and during a restart every connection, including the ones
just accepted. `ChaosServer` does all of these, drawn from a seeded generator, and acts out an
outage over a window of arrivals (counted, not timed, so a test is the same on a slow machine).

It is written on bare asyncio streams because aiohttp's server will not close a connection between
the bytes of one chunk, nor right after accepting it.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from sse_server_helpers import RawServer

# Where a streaming request's connection is closed instead of answered in full; `ok` answers.
ACTIONS = ("before_head", "after_head", "mid_chunk", "after_response", "reset")


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream_body(tokens: int) -> list[bytes]:
    """The HTTP chunks of a completions stream: text events, usage, `[DONE]`, the last chunk."""
    events = [
        {"choices": [{"index": 0, "text": f" t{i}", "finish_reason": None}]} for i in range(tokens)
    ]
    events.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": tokens}})
    pieces = [chunk(b"data: " + json.dumps(e).encode() + b"\n\n") for e in events]
    return [*pieces, chunk(b"data: [DONE]\n\n"), b"0\r\n\r\n"]


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


class ChaosServer(RawServer):
    """Answers `/v1/models` and streaming completions; `fault_rate` of the streaming requests (and
    every event inside the outage window) end in one of `ACTIONS` instead.

    `outage_at`/`outage_events`: from the `outage_at`-th streaming request on, the next
    `outage_events` arrivals (requests and newly accepted connections) are all closed without an
    answer, as a restarting server behind a load balancer does. `counts` tallies what was done.
    """

    def __init__(
        self,
        seed: int = 0,
        fault_rate: float = 0.0,
        tokens: int = 4,
        outage_at: int | None = None,
        outage_events: int = 0,
        model: str = "chaos-model",
    ) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.tokens = tokens
        self.outage_at = outage_at
        self.outage_left = outage_events
        self.model = model
        self.streams = 0
        self.counts: Counter[str] = Counter()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stop listening and end every open connection (asyncio leaves them open)."""
        for writer in self._connections.values():
            writer.transport.abort()
        await super().close()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def _in_outage(self) -> bool:
        started = self.outage_at is not None and self.streams >= self.outage_at
        if started and self.outage_left > 0:
            self.outage_left -= 1
            return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._in_outage():
            self.counts["outage_accept"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its answer (or its fault); False once the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else b""
        if method == "GET" and path.endswith("/v1/models"):
            models = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            writer.write(_sized(200, json.dumps(models).encode()))
            return True
        if not (path.endswith("/completions") and b'"stream":true' in body):
            writer.write(_sized(404, b'{"error": "not here"}'))
            return True
        self.streams += 1
        action = "outage" if self._in_outage() else self._draw()
        self.counts[action] += 1
        return await self._act(action, writer)

    def _draw(self) -> str:
        if self.rng.random() < self.fault_rate:
            return self.rng.choice(ACTIONS)
        return "ok"

    async def _act(self, action: str, writer: asyncio.StreamWriter) -> bool:
        pieces = stream_body(self.tokens)
        if action in ("outage", "before_head"):
            writer.close()
            return False
        if action == "reset":
            _reset(writer)
            return False
        writer.write(STREAM_HEAD)
        if action == "after_head":
            await writer.drain()
            writer.close()
            return False
        if action == "mid_chunk":
            cut = len(pieces) // 2
            writer.write(b"".join(pieces[:cut]) + pieces[cut][:7])
            await writer.drain()
            writer.close()
            return False
        writer.write(b"".join(pieces))
        await writer.drain()
        if action == "after_response":
            writer.close()
            return False
        return True


def _sized(status: int, body: bytes) -> bytes:
    reason = "OK" if status == 200 else "Not Found"
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status,
        reason.encode(),
        len(body),
        body,
    )


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (linger 0), as a crashed process's kernel does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextmanager
def in_thread(server: ChaosServer) -> Iterator[str]:
    """Run `server` on its own event loop in a thread; yields its API base URL.

    A server in the client's own event loop only acts between the client's callbacks; in a thread,
    as in another process, its closes land at any point of the client's work, which is where
    races between a connection being made and being lost show.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
