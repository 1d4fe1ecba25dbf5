"""Emptying a server's prefix cache between two measurements, where the server allows it.

vLLM answers `POST /reset_prefix_cache` (only when started with `VLLM_SERVER_DEV_MODE=1`;
`reset_external=true` also empties its offload tier), SGLang `POST /flush_cache`. A server that
is busy refuses for a moment (vLLM's 409 while requests hold blocks), so a refusal is retried; a
route that does not exist ends the attempt, and the caller is told why in one line.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from tmesh.text import one_line

ROUTES = ("/reset_prefix_cache?reset_external=true", "/flush_cache")
ATTEMPTS = 5
PAUSE_S = 0.5
TIMEOUT_S = 30.0


async def reset_prefix_cache(
    session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]
) -> tuple[str | None, str]:
    """Reset the cache: (the route that did it, or None, and what happened in words)."""
    root = urlunsplit((*urlsplit(base_url)[:2], "", "", ""))
    tried = []
    for route in ROUTES:
        outcome = await _post(session, root + route, headers)
        if outcome is None:
            return route.split("?")[0], f"POST {route.split('?')[0]} before each point"
        tried.append(f"POST {route.split('?')[0]}: {outcome}")
    return None, "; ".join(tried)


async def _post(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> str | None:
    """None on success, else why not (after retrying a busy server)."""
    why = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(PAUSE_S)
        try:
            async with session.post(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return one_line(str(exc)) or type(exc).__name__
        if status == 200:
            return None
        why = f"HTTP {status}"
        if status not in (409, 429, 503):
            return why
    return why
