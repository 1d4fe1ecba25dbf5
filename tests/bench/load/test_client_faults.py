"""Every way a request can fail, each from a purpose-built loopback server, and its record."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web
from net_helpers import refused_url
from sse_server_helpers import (
    DONE,
    RawServer,
    ScriptedServer,
    completion_stream,
    event,
    plan,
    text_event,
    usage_event,
    write_stream,
)

from tmesh.bench.load.client import ClientConfig, send_request
from tmesh.bench.load.http import Pool
from tmesh.results.records import ERROR_KINDS, RequestRecord

KEY = "sk-secret-0123456789"


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.close()


async def run_one(cfg: ClientConfig) -> RequestRecord:
    async with Pool(2) as pool:
        record = await send_request(pool, cfg, plan(), 0.0)
    assert record.error in ERROR_KINDS, record
    assert record.t_first is None and record.t_last is None
    assert record.t_end is not None and record.t_end >= record.t0
    assert record.error_detail and "\n" not in record.error_detail
    assert len(record.error_detail) <= 200
    return record


def raw_config(url: str, **overrides: object) -> ClientConfig:
    settings: dict[str, object] = {
        "base_url": url,
        "api": "completions",
        "model": "m",
        "headers": {},
        "max_tokens": 8,
        "request_timeout": 2.0,
    }
    settings.update(overrides)
    return ClientConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "body", "content_type", "kind", "snippet"),
    [
        (500, '{"error": {"message": "engine died"}}', "application/json", "http_5xx", "engine"),
        (503, "<html>\n<body>\n<h1>503 Service Unavailable</h1>", "text/html", "http_5xx", "<h1>"),
        (400, '{"error": "max_tokens too large"}', "application/json", "http_4xx", "too large"),
        (404, "Not Found", "text/plain", "http_4xx", "Not Found"),
    ],
)
async def test_http_errors(
    server: ScriptedServer, status: int, body: str, content_type: str, kind: str, snippet: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    record = await run_one(server.config(f"s{status}", handler))
    assert (record.error, record.status) == (kind, status)
    assert record.error_detail.startswith(f"HTTP {status}")
    assert snippet in record.error_detail


async def test_429_retry_after_seconds_date_and_none(server: ScriptedServer) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    headers = {
        "secs": {"Retry-After": "7"},
        "date": {"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")},
        "none": {},
    }

    def handler_for(name: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response({"error": "slow down"}, status=429, headers=headers[name])

        return handler

    records = {name: await run_one(server.config(name, handler_for(name))) for name in headers}
    assert all(r.error == "http_429" and r.status == 429 for r in records.values())
    assert records["secs"].retry_after == 7.0
    assert 27.0 <= records["date"].retry_after <= 31.0
    assert records["none"].retry_after is None


async def test_api_key_is_masked_in_error_details(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        text = f"invalid key {request.headers['Authorization']}"
        return web.Response(status=401, text=text)

    cfg = server.config("auth", handler, headers={"Authorization": f"Bearer {KEY}"})
    record = await run_one(cfg)
    assert record.error == "http_4xx"
    assert KEY not in record.error_detail
    assert "sk-s…" in record.error_detail


async def test_stream_cut_after_k_tokens(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/event-stream"
        await response.prepare(request)
        for i in range(3):
            await response.write(text_event(f" t{i}"))
        assert request.transport is not None
        request.transport.abort()
        return response

    record = await run_one(server.config("cut", handler))
    assert (record.error, record.status) == ("stream_cut", 200)
    assert "3 text events" in record.error_detail


async def test_clean_end_without_done_usage_or_finish_is_a_cut(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, [text_event(" a"), text_event(" b")])

    record = await run_one(server.config("short", handler))
    assert record.error == "stream_cut"


@pytest.mark.parametrize("after_tokens", [0, 2])
async def test_stall_past_request_timeout(server: ScriptedServer, after_tokens: int) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "text/event-stream"
        if after_tokens:
            await response.prepare(request)
            for i in range(after_tokens):
                await response.write(text_event(f" t{i}"))
        await server.release.wait()
        return response

    record = await run_one(server.config(f"stall{after_tokens}", handler, request_timeout=0.3))
    assert record.error == "timeout"
    assert 0.29 <= record.e2e < 2.0
    assert record.status == (200 if after_tokens else None)


async def test_slot_is_free_again_after_a_timeout(server: ScriptedServer) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await server.release.wait()
        return web.Response()

    async def ok(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, completion_stream(2))

    async with Pool(1) as pool:
        cfg = server.config("stall", stall, request_timeout=0.2)
        assert (await send_request(pool, cfg, plan(), 0.0)).error == "timeout"
        record = await send_request(pool, server.config("ok", ok), plan(), 0.0)
    assert record.ok, record.error_detail


@pytest.mark.parametrize(
    ("name", "pieces", "snippet"),
    [
        ("badjson", [text_event(" a"), b'data: {"choices": [\n\n', DONE], "bad event"),
        ("nodata", [text_event(" a"), b'{"choices": []}\n\n', DONE], "without a data: field"),
        ("errobj", [text_event(" a"), event({"error": {"message": "oom"}}), DONE], "oom"),
        ("vllmerr", [event({"object": "error", "message": "boom"}), DONE], "boom"),
        ("notext", [usage_event(5, 0), DONE], "without any generated text"),
        ("array", [b"data: [1, 2]\n\n", DONE], "bad event"),
    ],
)
async def test_malformed_streams(
    server: ScriptedServer, name: str, pieces: list[bytes], snippet: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, pieces)

    record = await run_one(server.config(name, handler))
    assert (record.error, record.status) == ("malformed", 200)
    assert snippet in record.error_detail


async def test_compressed_stream_is_refused(server: ScriptedServer) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(b"".join(completion_stream(2)))
        headers = {"Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers, content_type="text/event-stream")

    record = await run_one(server.config("gzip", handler))
    assert record.error == "malformed"
    assert "gzip" in record.error_detail


async def test_connection_refused() -> None:
    with refused_url() as url:
        record = await run_one(raw_config(f"{url}/v1"))
    assert (record.error, record.status) == ("connect", None)
    assert "Connect" in record.error_detail or "refused" in record.error_detail.lower()


async def test_unknown_host_is_a_connect_error() -> None:
    record = await run_one(raw_config("http://no-such-host.invalid/v1"))
    assert record.error == "connect"


async def test_server_that_closes_at_once() -> None:
    raw = RawServer(close_at_once=True)
    url = await raw.start()
    try:
        record = await run_one(raw_config(url))
    finally:
        await raw.close()
    assert (record.error, record.status) == ("connect", None)


async def test_non_http_answer_is_malformed() -> None:
    raw = RawServer(reply=b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    url = await raw.start()
    try:
        record = await run_one(raw_config(url))
    finally:
        await raw.close()
    assert record.error == "malformed"
    assert "status line" in record.error_detail


async def test_close_delimited_http10_stream_succeeds() -> None:
    body = b"".join(completion_stream(3))
    raw = RawServer(reply=b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + body)
    url = await raw.start()
    try:
        async with Pool(1) as pool:
            record = await send_request(pool, raw_config(url), plan(), 0.0)
    finally:
        await raw.close()
    assert record.ok, record.error_detail
    assert record.completion_tokens == 3


async def test_server_closing_an_idle_keep_alive_connection_is_not_an_error() -> None:
    body = b"".join(completion_stream(2))
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    raw = RawServer(reply=reply)
    url = await raw.start()
    try:
        async with Pool(1) as pool:
            records = [await send_request(pool, raw_config(url), plan(i), 0.0) for i in range(3)]
    finally:
        await raw.close()
    assert all(r.ok for r in records), [r.error_detail for r in records]
