"""Purpose-built loopback servers for the streaming client's tests.

`ScriptedServer` is a real aiohttp server whose routes are scenarios: each test registers a handler
that writes exactly the bytes, splits, delays and faults it needs, under
`http://127.0.0.1:PORT/<scenario>/v1`. `RawServer` answers with hand-written bytes for what aiohttp
will not produce (a non-HTTP answer, a close-delimited body, an immediate close).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from tmesh.bench.load.client import ClientConfig
from tmesh.results.records import RequestPlan

DONE = b"data: [DONE]\n\n"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def event(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def text_event(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return event({"id": "cmpl-1", "object": "text_completion", "choices": [choice]})


def chat_event(finish: str | None = None, **delta: str) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return event({"id": "chat-1", "object": "chat.completion.chunk", "choices": [choice]})


def usage_event(prompt: int, completion: int, cached: int | None = None) -> bytes:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return event({"id": "cmpl-1", "choices": [], "usage": usage})


def completion_stream(tokens: int, usage: bool = True, prompt: int = 11) -> list[bytes]:
    """A well-formed completions stream: `tokens` text events, optional usage, `[DONE]`."""
    events = [text_event(f" t{i}", "length" if i == tokens - 1 else None) for i in range(tokens)]
    if usage:
        events.append(usage_event(prompt, tokens))
    return [*events, DONE]


def plan(index: int = 0, prompt: str = "Hello there. ", expected: int = 5) -> RequestPlan:
    return RequestPlan(
        index=index,
        context_id=3,
        question_id=1,
        visit=2,
        rotation=1,
        context=prompt,
        question="Why?",
        expected_prompt_tokens=expected,
    )


async def write_stream(
    request: web.Request,
    pieces: Sequence[bytes],
    *,
    delays: Sequence[float] = (),
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Each piece becomes one HTTP chunk; `delays[i]` is slept before piece i."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = "text/event-stream"
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i, piece in enumerate(pieces):
        if i < len(delays) and delays[i]:
            await asyncio.sleep(delays[i])
        await response.write(piece)
    await response.write_eof()
    return response


class ScriptedServer:
    """An aiohttp server on a free loopback port that runs one scripted handler per scenario and
    remembers every request body and every client port it saw."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.scripts: dict[str, Handler] = {}
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.peers: set[int] = set()
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def script(self, name: str, handler: Handler) -> str:
        self.scripts[name] = handler
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{name}/v1"

    def config(self, name: str, handler: Handler, **overrides: Any) -> ClientConfig:
        settings: dict[str, Any] = {
            "base_url": self.script(name, handler),
            "api": "completions",
            "model": "m",
            "headers": {},
            "max_tokens": 8,
            "request_timeout": 5.0,
        }
        settings.update(overrides)
        return ClientConfig(**settings)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(peer[1])
        self.arrived.set()
        return await self.scripts[request.match_info["scenario"]](request)

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/{scenario}/v1/completions", self._dispatch)
        app.router.add_post("/{scenario}/v1/chat/completions", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
        await site.start()
        assert self._runner.addresses
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


class RawServer:
    """A TCP server that reads one request, then writes `reply` (if any) and closes; with
    `close_at_once` it closes every connection as soon as it is accepted."""

    def __init__(self, reply: bytes = b"", close_at_once: bool = False) -> None:
        self.reply = reply
        self.close_at_once = close_at_once
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.close_at_once:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(self.reply)
            await writer.drain()
        writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}/v1"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
