"""Endpoint normalisation, key masking, and model discovery over real loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from net_helpers import refused_url, serve_app

from tmesh.bench.endpoint.dialects import ContextLimit
from tmesh.bench.endpoint.discovery import (
    Discovery,
    DiscoveryError,
    EndpointError,
    auth_headers,
    discover,
    discover_patiently,
    normalize_endpoint,
)
from tmesh.text import mask_key

KEY = "vllm_sk_555a1b7ff3e0f617b1240300000000018075f66c9"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost:8000", "http://localhost:8000/v1"),
        ("192.168.111.29:30080", "http://192.168.111.29:30080/v1"),
        ("http://192.168.111.29:30080", "http://192.168.111.29:30080/v1"),
        ("http://192.168.111.29:30080/", "http://192.168.111.29:30080/v1"),
        ("http://h:8000/v1", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("http://h:8000/v1/chat/completions", "http://h:8000/v1"),
        ("http://h:8000/v1/chat/completions/", "http://h:8000/v1"),
        ("http://h:8000/v1/completions", "http://h:8000/v1"),
        ("http://h:8000/v1/completions//", "http://h:8000/v1"),
        ("http://h:8000/v1/models", "http://h:8000/v1"),
        ("https://api.example.com/v1", "https://api.example.com/v1"),
        ("https://api.example.com", "https://api.example.com/v1"),
        ("HTTPS://API.Example.COM:443/v1/", "https://api.example.com:443/v1"),
        ("http://h/openai/v1", "http://h/openai/v1"),
        ("http://h/openai/v1/chat/completions", "http://h/openai/v1"),
        ("http://h/openai/", "http://h/openai/v1"),
        ("  http://h:1/v1  ", "http://h:1/v1"),
        ("http://[::1]:8000/v1/completions", "http://[::1]:8000/v1"),
        ("my_host.internal:9000", "http://my_host.internal:9000/v1"),
    ],
)
def test_normalize_endpoint_forms(given: str, expected: str) -> None:
    assert normalize_endpoint(given) == expected


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://h:21", "unsupported scheme"),
        ("ws://h:80/v1", "unsupported scheme"),
        ("http://", "no host"),
        ("http://:8000/v1", "no host"),
        ("h:notaport", "bad port"),
        ("http://h:70000", "bad port"),
        ("http://h:0", "bad port"),
        ("http://exa mple.com:80", "not a valid host"),
        ("http://user:secret@h:8000", "credentials"),
        ("ftp://user:secret@h", "credentials"),
        ("http://h:8000/v1?api-version=1", "query"),
    ],
)
def test_normalize_endpoint_rejects(given: str, fragment: str) -> None:
    with pytest.raises(EndpointError) as info:
        normalize_endpoint(given)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert "secret" not in message


def test_mask_key() -> None:
    assert mask_key(KEY) == "vllm…"
    assert mask_key(None) == "(none)"
    assert mask_key("") == "(none)"
    assert mask_key("abcdefgh") == "abcd…"
    assert mask_key("abc") == "a…"


def test_auth_headers() -> None:
    assert auth_headers(KEY) == {"Authorization": f"Bearer {KEY}"}
    assert auth_headers(None) == {}
    assert auth_headers("") == {}


@dataclass
class FakeServer:
    """A /v1/models endpoint whose answer each test sets; records the Authorization headers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    hang: bool = False
    auth_seen: list[str | None] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""
    pages: dict[str, object] = field(default_factory=dict)
    pages_asked: list[str] = field(default_factory=list)

    def models(self, *entries: dict) -> None:
        self.body = orjson.dumps({"object": "list", "data": list(entries)})

    async def handle(self, request: web.Request) -> web.Response:
        self.auth_seen.append(request.headers.get("Authorization"))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status, body=self.body, content_type=self.content_type)

    async def page(self, request: web.Request) -> web.Response:
        """Any other page of the server: the JSON a test put there, else 404."""
        self.pages_asked.append(request.path)
        if request.path not in self.pages:
            return web.Response(status=404, text="Not Found")
        return web.Response(
            body=orjson.dumps(self.pages[request.path]), content_type="application/json"
        )


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_get("/v1/models", fake.handle)
    app.router.add_get("/{page:.*}", fake.page)
    async with serve_app(app) as url:
        fake.base_url = f"{url}/v1"
        yield fake
        fake.release.set()


def _entry(name: str, **extra: object) -> dict:
    return {"id": name, "object": "model", "owned_by": "vllm", **extra}


async def _fail(session: aiohttp.ClientSession, base_url: str, **kwargs: object) -> str:
    args = {"api_key": KEY, "model": None, "timeout": 5.0, **kwargs}
    with pytest.raises(DiscoveryError) as info:
        await discover(session, base_url, **args)
    message = str(info.value)
    assert "\n" not in message
    assert KEY not in message
    assert f"{base_url}/models" in message
    return message


async def test_single_model_is_used_with_bearer_key(server, session) -> None:
    server.models(_entry("openai/gpt-oss-20b", max_model_len=131072))
    found = await discover(session, server.base_url, KEY, None, 5.0)
    limit = ContextLimit(131072, "max_model_len in /v1/models")
    assert found == Discovery(server.base_url, ["openai/gpt-oss-20b"], "openai/gpt-oss-20b", limit)
    assert server.pages_asked == []
    assert server.auth_seen == [f"Bearer {KEY}"]


async def test_no_key_sends_no_authorization(server, session) -> None:
    server.models(_entry("m"))
    found = await discover(session, server.base_url, None, None, 5.0)
    assert found.context is None
    assert server.auth_seen == [None]
    assert server.pages_asked == ["/props", "/info", "/get_server_info"]


async def test_llamacpp_states_its_per_slot_context_in_the_model_meta(server, session) -> None:
    server.models(_entry("tiny-llama", meta={"n_ctx": 8192, "n_ctx_train": 8192}))
    found = await discover(session, server.base_url, None, None, 5.0)
    assert found.context == ContextLimit(8192, "meta.n_ctx in /v1/models")


async def test_context_from_a_server_page_when_the_model_list_has_none(server, session) -> None:
    server.models(_entry("m"))
    server.pages["/info"] = {"max_input_tokens": 4095, "max_total_tokens": 4096}
    found = await discover(session, server.base_url, None, None, 5.0)
    assert found.context == ContextLimit(4096, "/info (TGI)")


async def test_several_models_first_or_requested(server, session) -> None:
    server.models(_entry("a"), _entry("b"), _entry("c"))
    first = await discover(session, server.base_url, None, None, 5.0)
    assert (first.model, first.models) == ("a", ["a", "b", "c"])
    chosen = await discover(session, server.base_url, None, "b", 5.0)
    assert chosen.model == "b"
    folded = await discover(session, server.base_url, None, "C", 5.0)
    assert folded.model == "c"


async def test_unknown_model_lists_available(server, session) -> None:
    server.models(_entry("a"), _entry("b"))
    message = await _fail(session, server.base_url, model="zzz")
    assert "'zzz' is not served" in message
    assert "available: a, b" in message


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key(server, session, status: int) -> None:
    server.status = status
    server.body = orjson.dumps({"error": f"bad key {KEY}"})
    message = await _fail(session, server.base_url)
    assert f"HTTP {status}" in message
    assert "check --api-key" in message


async def test_missing_key_says_to_pass_one(server, session) -> None:
    server.status = 401
    message = await _fail(session, server.base_url, api_key=None)
    assert "pass --api-key" in message


async def test_not_found(server, session) -> None:
    message = await _fail(session, server.base_url.replace("/v1", "/nothing/v1"))
    assert "HTTP 404" in message
    assert "OpenAI-compatible" in message


async def test_other_status_shows_body_without_key(server, session) -> None:
    server.status = 503
    server.body = f"upstream overloaded\n(key {KEY})".encode()
    server.content_type = "text/plain"
    message = await _fail(session, server.base_url)
    assert "HTTP 503" in message
    assert "upstream overloaded" in message
    assert "vllm…" in message


async def test_non_json(server, session) -> None:
    server.body = b"<!DOCTYPE html><html>login</html>"
    server.content_type = "text/html"
    message = await _fail(session, server.base_url)
    assert "not JSON" in message
    assert "<!DOCTYPE html>" in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"object": "list"}', "no 'data' list"),
        (b'["a", "b"]', "no 'data' list"),
        (b'{"data": "a"}', "no 'data' list"),
        (b'{"data": []}', "lists no models"),
        (b'{"data": [{"object": "model"}]}', "lists no models"),
    ],
)
async def test_bad_model_lists(server, session, body: bytes, fragment: str) -> None:
    server.body = body
    assert fragment in await _fail(session, server.base_url)


async def test_refused(session) -> None:
    with refused_url() as url:
        message = await _fail(session, f"{url}/v1")
    assert "connection refused" in message


async def test_timeout(server, session) -> None:
    server.hang = True
    server.models(_entry("m"))
    message = await _fail(session, server.base_url, timeout=0.3)
    assert "timed out after 0.3 s" in message


class _NoDNS(AbstractResolver):
    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def close(self) -> None:
        return None


async def test_dns_failure() -> None:
    connector = aiohttp.TCPConnector(resolver=_NoDNS())
    async with aiohttp.ClientSession(connector=connector) as session:
        message = await _fail(session, "http://no-such-host.invalid:8000/v1")
    assert "DNS lookup failed" in message
    assert "no-such-host.invalid" in message


async def test_tls_to_a_plain_http_server(server, session) -> None:
    server.models(_entry("m"))
    message = await _fail(session, server.base_url.replace("http://", "https://"))
    assert "TLS" in message


@pytest.mark.parametrize(
    ("status", "transient"),
    [(503, True), (500, True), (429, True), (401, False), (403, False), (404, False)],
)
async def test_which_statuses_may_pass(server, session, status: int, transient: bool) -> None:
    server.status = status
    with pytest.raises(DiscoveryError) as info:
        await discover(session, server.base_url, KEY, None, 5.0)
    assert info.value.transient is transient


async def test_refused_may_pass_and_dns_may_not(session) -> None:
    with refused_url() as url, pytest.raises(DiscoveryError) as refused:
        await discover(session, f"{url}/v1", None, None, 5.0)
    assert refused.value.transient
    connector = aiohttp.TCPConnector(resolver=_NoDNS())
    async with aiohttp.ClientSession(connector=connector) as no_dns:
        with pytest.raises(DiscoveryError) as dns:
            await discover(no_dns, "http://no-such-host.invalid:8000/v1", None, None, 5.0)
    assert not dns.value.transient


class Starting(FakeServer):
    """A server that answers 503 to its first `busy` requests, as vLLM does while loading."""

    busy: int = 2

    async def handle(self, request: web.Request) -> web.Response:
        if self.busy:
            self.busy -= 1
            return web.Response(status=503, text="loading model")
        return await super().handle(request)


async def test_patience_waits_out_a_starting_server(session) -> None:
    fake = Starting()
    fake.models(_entry("m"))
    app = web.Application()
    app.router.add_get("/v1/models", fake.handle)
    app.router.add_get("/{page:.*}", fake.page)
    heard: list[tuple[str, float]] = []
    async with serve_app(app) as url:
        found = await discover_patiently(
            session, f"{url}/v1", None, None, 5.0, 30.0, lambda *said: heard.append(said)
        )
    assert found.model == "m"
    assert [cause for cause, _ in heard] == ["HTTP 503 Service Unavailable: loading model"] * 2
    assert all(0 < left <= 30.0 for _, left in heard)
    assert heard[0][1] > heard[1][1], "the countdown counts down"


async def test_patience_ends_at_once_on_a_permanent_failure(server, session) -> None:
    server.status = 401
    heard: list[tuple[str, float]] = []
    with pytest.raises(DiscoveryError) as info:
        await discover_patiently(
            session, server.base_url, KEY, None, 5.0, 30.0, lambda *said: heard.append(said)
        )
    assert heard == []
    assert len(server.auth_seen) == 1
    assert "401" in str(info.value)


async def test_patience_runs_out_and_says_so(session) -> None:
    heard: list[tuple[str, float]] = []
    with refused_url() as url, pytest.raises(DiscoveryError) as info:
        await discover_patiently(
            session, f"{url}/v1", None, None, 5.0, 0.6, lambda *said: heard.append(said)
        )
    message = str(info.value)
    assert "connection refused" in message
    assert "still failing after 0.6 s of retries (--connect-timeout)" in message
    assert "\n" not in message
    assert len(heard) >= 2


async def test_no_patience_is_one_attempt(session) -> None:
    with refused_url() as url, pytest.raises(DiscoveryError) as info:
        await discover_patiently(session, f"{url}/v1", None, None, 5.0, 0.0)
    assert "retries" not in str(info.value)
