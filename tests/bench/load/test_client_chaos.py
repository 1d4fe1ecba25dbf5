"""A server that closes connections at any point: every request ends in a record, never a crash.

The pool once handed out a connection that the server had closed between its connect and its first
request, and the run died with an internal error (an assertion on the connection's transport).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from chaos_server import ACTIONS, ChaosServer, in_thread
from sse_server_helpers import plan

from tmesh.bench.load.client import ClientConfig, send_request
from tmesh.bench.load.http import Pool
from tmesh.results.records import RequestRecord

TOKENS = 4
# A crash leaks a pooled connection, so a broken client can also hang: bound every run.
RUN_LIMIT_S = 120.0


def chaos_config(url: str) -> ClientConfig:
    return ClientConfig(
        base_url=url,
        api="completions",
        model="m",
        headers={},
        max_tokens=TOKENS,
        request_timeout=10.0,
    )


async def closed_loop(url: str, requests: int, inflight: int) -> list[RequestRecord]:
    """`inflight` slots sending `requests` requests through one pool of `inflight` connections."""
    cfg = chaos_config(url)
    pending = iter(range(requests))
    records: list[RequestRecord] = []
    async with Pool(inflight) as pool:

        async def slot() -> None:
            for index in pending:
                records.append(await send_request(pool, cfg, plan(index), 0.0))

        await asyncio.wait_for(asyncio.gather(*(slot() for _ in range(inflight))), RUN_LIMIT_S)
    return records


async def test_connection_closed_as_soon_as_accepted_is_a_connect_error() -> None:
    """The crash: a new connection that the server closes before the request goes out."""
    server = ChaosServer(outage_at=0, outage_events=10**6)
    with in_thread(server) as url:
        records = await closed_loop(url, requests=100, inflight=4)
    assert len(records) == 100
    assert {r.error for r in records} == {"connect"}
    assert all(r.error_detail for r in records)
    assert server.counts["outage_accept"] >= 100


async def test_connections_closed_at_any_point_are_counted_or_reconnected() -> None:
    """Faults at every point of an exchange, then an outage that closes every connection."""
    server = ChaosServer(seed=11, fault_rate=0.3, tokens=TOKENS, outage_at=150, outage_events=80)
    with in_thread(server) as url:
        records = await closed_loop(url, requests=400, inflight=8)
    assert len(records) == 400
    assert all(server.counts[action] for action in ACTIONS), server.counts
    assert server.counts["outage"] + server.counts["outage_accept"] == 80
    kinds = Counter(r.error for r in records)
    assert set(kinds) <= {None, "connect", "stream_cut"}, kinds
    ok = [r for r in records if r.ok]
    assert all(r.completion_tokens == TOKENS and r.usage_reported for r in ok)
    # A fault on a reused connection before any answer is retried once on a new connection,
    # and a close after a complete response costs nothing; nothing fails without a fault.
    faults = sum(server.counts[a] for a in ("outage", "outage_accept", *ACTIONS))
    assert len(records) - len(ok) <= faults
    assert len(ok) <= server.counts["ok"] + server.counts["after_response"]
    assert any(r.ok for r in records[-100:]), "no recovery after the outage"
