"""Resetting a server's prefix cache: vLLM's route, SGLang's, a busy server retried, and a server
that allows neither said in one line."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from net_helpers import refused_url, serve_app

from tmesh.bench.endpoint import cachereset
from tmesh.bench.endpoint.cachereset import reset_prefix_cache


def _app(routes: dict[str, list[int]], seen: list[str]) -> web.Application:
    """Each route answers its statuses in turn (the last one from then on)."""

    async def handle(request: web.Request) -> web.Response:
        seen.append(str(request.rel_url))
        statuses = routes[request.path]
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.Response(status=status)

    app = web.Application()
    for path in routes:
        app.router.add_post(path, handle)
    return app


async def test_vllm_route_with_the_offload_tier_and_a_busy_moment(
    session: aiohttp.ClientSession, monkeypatch
) -> None:
    monkeypatch.setattr(cachereset, "PAUSE_S", 0.0)
    seen: list[str] = []
    async with serve_app(_app({"/reset_prefix_cache": [409, 200]}, seen)) as url:
        route, words = await reset_prefix_cache(session, url + "/v1", {})
    assert route == "/reset_prefix_cache"
    assert seen == ["/reset_prefix_cache?reset_external=true"] * 2
    assert "POST /reset_prefix_cache" in words


async def test_sglang_route_when_vllm_s_is_missing(session: aiohttp.ClientSession) -> None:
    seen: list[str] = []
    async with serve_app(_app({"/flush_cache": [200]}, seen)) as url:
        route, _ = await reset_prefix_cache(session, url + "/v1", {})
    assert route == "/flush_cache"


async def test_a_server_that_allows_no_reset_says_why(
    session: aiohttp.ClientSession, monkeypatch
) -> None:
    monkeypatch.setattr(cachereset, "PAUSE_S", 0.0)
    async with serve_app(_app({"/other": [200]}, [])) as url:
        route, words = await reset_prefix_cache(session, url, {})
    assert route is None
    assert words == "POST /reset_prefix_cache: HTTP 404; POST /flush_cache: HTTP 404"
    with refused_url() as url:
        route, words = await reset_prefix_cache(session, url, {})
    assert route is None and "\n" not in words and words.count("POST") == 2
