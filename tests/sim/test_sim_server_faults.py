"""Each injected fault acted out over real loopback HTTP (forced with `X-Sim-Fault`, or drawn from
the configured rates), and the pause/resume "server restart"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from test_sim_server import CONFIG, scrape, sse_events

from tmesh.sim.faults import FaultConfig
from tmesh.sim.server import SimulatorHandle, start_simulator

BODY = {"prompt": "tell me about caches", "max_tokens": 10}


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHandle]:
    async with await start_simulator(CONFIG) as handle:
        yield handle


async def partial_stream(
    session: aiohttp.ClientSession, url: str, fault: str, body: dict[str, Any] = BODY
) -> tuple[bytes, BaseException | None]:
    """The bytes received before the stream ended, and the client error that ended it."""
    received = b""
    async with session.post(
        url, json=body | {"stream": True}, headers={"X-Sim-Fault": fault}
    ) as resp:
        assert resp.status == 200
        try:
            async for data in resp.content.iter_any():
                received += data
        except aiohttp.ClientPayloadError as exc:
            return received, exc
    return received, None


def tokens_in(events: list[bytes]) -> int:
    count = 0
    for event in events:
        chunk = orjson.loads(event)
        count += sum(len(c["text"].split()) for c in chunk.get("choices", []))
    return count


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("503", 503, "application/json"),
        ("500:json", 500, "application/json"),
        ("500:html", 500, "text/html"),
        ("503:text", 503, "text/plain"),
    ],
)
async def test_forced_http_errors(
    sim: SimulatorHandle,
    session: aiohttp.ClientSession,
    fault: str,
    status: int,
    content_type: str,
) -> None:
    async with session.post(
        f"{sim.url}/v1/completions", json=BODY, headers={"X-Sim-Fault": fault}
    ) as resp:
        assert resp.status == status
        assert resp.content_type == content_type
        body = await resp.read()
    if content_type == "application/json":
        error = orjson.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}
    else:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body)
        assert str(status).encode() in body
    assert sim.faults.counts == {str(status): 1}


@pytest.mark.parametrize(
    ("fault", "retry_after"), [("429", "1"), ("429:2", "2"), ("429:none", None)]
)
async def test_forced_429(
    sim: SimulatorHandle, session: aiohttp.ClientSession, fault: str, retry_after: str | None
) -> None:
    async with session.post(
        f"{sim.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"X-Sim-Fault": fault},
    ) as resp:
        assert resp.status == 429
        assert resp.headers.get("Retry-After") == retry_after
        assert orjson.loads(await resp.read())["error"]["code"] == 429


async def test_cut_mid_stream(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    received, error = await partial_stream(session, f"{sim.url}/v1/completions", "cut:3")
    assert isinstance(error, aiohttp.ClientPayloadError)
    events = sse_events(received)
    assert b"[DONE]" not in events
    assert tokens_in(events) == 3
    assert sim.faults.counts == {"cut": 1}


async def test_cut_before_first_token(sim: SimulatorHandle, session: aiohttp.ClientSession):
    received, error = await partial_stream(session, f"{sim.url}/v1/completions", "cut:0")
    assert error is not None
    assert received == b""


async def test_cut_non_streaming(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    async with session.post(
        f"{sim.url}/v1/completions", json=BODY, headers={"X-Sim-Fault": "cut"}
    ) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_stall_before_headers(sim: SimulatorHandle, session: aiohttp.ClientSession):
    url = f"{sim.url}/v1/completions"
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            url, json=BODY, headers={"X-Sim-Fault": "stall:30"}, timeout=timeout
        ) as resp:
            await resp.read()
    assert sim.faults.counts == {"stall": 1}
    started = time.monotonic()
    async with session.post(url, json=BODY, headers={"X-Sim-Fault": "stall:0.3"}) as resp:
        assert resp.status == 200
        assert len((await resp.json())["choices"][0]["text"].split()) == 10
    assert time.monotonic() - started >= 0.3


async def test_stall_mid_stream(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    async with session.post(
        f"{sim.url}/v1/completions",
        json=BODY | {"stream": True},
        headers={"X-Sim-Fault": "stall:0.3:2"},
    ) as resp:
        while line := await resp.content.readuntil(b"\n\n"):
            arrivals.append((time.monotonic(), line))
    events = sse_events(b"".join(line for _, line in arrivals))
    assert events[-1] == b"[DONE]"
    assert tokens_in(events[:-1]) == 10
    assert arrivals[2][0] - started >= 0.3


async def test_malformed_event(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    received, error = await partial_stream(session, f"{sim.url}/v1/completions", "malformed:2")
    assert error is None
    events = sse_events(received)
    assert events[-1] == b"[DONE]"
    bad = []
    good = []
    for event in events[:-1]:
        try:
            good.append(orjson.loads(event))
        except orjson.JSONDecodeError:
            bad.append(event)
    assert len(bad) == 1
    assert sum(len(c["choices"][0]["text"].split()) for c in good) == 10


async def test_error_in_stream(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    received, error = await partial_stream(
        session, f"{sim.url}/v1/completions", "error-in-stream:2"
    )
    assert error is None
    events = sse_events(received)
    assert events[-1] == b"[DONE]"
    *tokens, failure = [orjson.loads(e) for e in events[:-1]]
    assert tokens_in([orjson.dumps(t) for t in tokens]) == 2
    assert set(failure) == {"error"}
    assert set(failure["error"]) == {"message", "type", "param", "code"}


async def test_non_streaming_counterparts(sim: SimulatorHandle, session: aiohttp.ClientSession):
    url = f"{sim.url}/v1/completions"
    async with session.post(url, json=BODY, headers={"X-Sim-Fault": "malformed"}) as resp:
        assert resp.status == 200
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(await resp.read())
    async with session.post(url, json=BODY, headers={"X-Sim-Fault": "error-in-stream"}) as resp:
        assert resp.status == 200
        assert set(orjson.loads(await resp.read())) == {"error"}


async def test_random_faults_are_counted_and_exported(session: aiohttp.ClientSession) -> None:
    faults = FaultConfig(error_rate=0.5, rate_429=0.5, retry_after=None, seed=1)
    async with await start_simulator(CONFIG, faults=faults) as handle:
        statuses = []
        for _ in range(20):
            async with session.post(f"{handle.url}/v1/completions", json=BODY) as resp:
                statuses.append(resp.status)
        async with session.post(
            f"{handle.url}/v1/completions", json=BODY, headers={"X-Sim-Fault": "none"}
        ) as resp:
            assert resp.status == 200
        async with session.get(f"{handle.url}/metrics") as resp:
            samples = scrape(await resp.text())
    assert set(statuses) == {429, 500, 503}
    counts = handle.faults.counts
    assert sum(counts.values()) == 20
    assert counts["429"] == statuses.count(429)
    exported = {
        labels["fault"]: value for labels, value in samples["tmesh_sim_faults_injected_total"]
    }
    assert exported == counts


async def test_pause_and_resume(sim: SimulatorHandle, session: aiohttp.ClientSession) -> None:
    url = f"{sim.url}/v1/completions"
    slow_body = BODY | {"max_tokens": 3000, "stream": True}
    async with session.post(url, json=slow_body, headers={"X-Sim-Fault": "stall:30:1"}) as resp:
        assert (await resp.content.readuntil(b"\n\n")).startswith(b"data: ")
        await sim.pause()
        assert sim.paused
        with pytest.raises(aiohttp.ClientError):
            await resp.read()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with session.post(url, json=BODY) as resp:
            pass
    await sim.resume()
    assert not sim.paused
    async with session.post(url, json=BODY) as resp:
        assert resp.status == 200
        assert len((await resp.json())["choices"][0]["text"].split()) == 10
    await sim.stop()
    await sim.stop()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with session.post(url, json=BODY) as resp:
            pass
