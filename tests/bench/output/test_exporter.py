"""tmesh's own /metrics: started on a free loopback port, fed records and a snapshot, scraped over
HTTP and parsed back with prometheus_client's parser."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import aiohttp
import pytest
from factories import request
from prometheus_client.parser import text_string_to_metric_families

from tmesh.bench.output.exporter import Exporter, ExporterError
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    MetricStats,
    RequestRecord,
    WindowStats,
)


def record(index: int, visit: int, ttft: float, error: str | None = None) -> RequestRecord:
    if error:
        return request(1.0, index=index, visit=visit, rotation=0, t_end=1.5, error=error)
    return request(
        10.0,
        ttft,
        0.99,
        index=index,
        context_id=index % 3,
        visit=visit,
        t_end=11.0 + ttft,
        prompt_tokens=32_010,
        completion_tokens=100,
        usage_reported=True,
    )


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exp = Exporter(0)
    exp.start()
    yield exp
    exp.stop()


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_scraped_values_match_what_was_observed(exporter: Exporter) -> None:
    assert exporter.port != 0
    for i, (visit, ttft) in enumerate([(0, 4.2), (0, 3.9), (1, 0.4), (2, 0.35), (1, 0.5)]):
        exporter.observe(record(i, visit, ttft))
    exporter.observe(record(9, 1, 0.0, error="timeout"))
    exporter.observe(record(10, 1, 0.0, error="http_429"))
    exporter.observe(record(11, 1, 0.0, error="timeout"))
    exporter.update(
        IntervalSnapshot(
            index=3,
            elapsed=20.0,
            interval_seconds=5.0,
            total_requests=5,
            qps=0.25,
            global_stats=WindowStats(),
            interval_stats=WindowStats(),
            cold_ttft=MetricStats(),
            warm_ttft=MetricStats(),
            rotations=1,
            health=ClientHealth(inflight_mean=2.5, inflight_target=3),
        )
    )
    m = await scrape(exporter.url)
    assert m[("tmesh_requests_total", (("kind", "none"), ("status", "ok")))] == 5
    assert m[("tmesh_requests_total", (("kind", "timeout"), ("status", "error")))] == 2
    assert m[("tmesh_requests_total", (("kind", "http_429"), ("status", "error")))] == 1
    assert m[("tmesh_ttft_seconds_count", (("visit", "cold"),))] == 2
    assert m[("tmesh_ttft_seconds_count", (("visit", "warm"),))] == 3
    assert m[("tmesh_ttft_seconds_sum", (("visit", "cold"),))] == pytest.approx(8.1)
    assert m[("tmesh_ttft_seconds_bucket", (("le", "0.5"), ("visit", "warm")))] == 3
    assert m[("tmesh_ttft_seconds_bucket", (("le", "2.5"), ("visit", "cold")))] == 0
    assert m[("tmesh_itl_seconds_count", ())] == 5
    assert m[("tmesh_itl_seconds_sum", ())] == pytest.approx(5 * 0.99 / 99)
    assert m[("tmesh_e2e_seconds_count", ())] == 5
    assert m[("tmesh_e2e_seconds_sum", ())] == pytest.approx(5 + 4.2 + 3.9 + 0.4 + 0.35 + 0.5)
    assert m[("tmesh_prompt_tokens_total", ())] == 5 * 32_010
    assert m[("tmesh_completion_tokens_total", ())] == 500
    assert m[("tmesh_qps", ())] == 0.25
    assert m[("tmesh_rotations", ())] == 1
    assert m[("tmesh_inflight", ())] == 2.5


async def test_nothing_but_tmesh_metrics(exporter: Exporter) -> None:
    names = {name for name, _ in await scrape(exporter.url)}
    assert names and all(name.startswith("tmesh_") for name in names)


def test_stop_releases_the_port() -> None:
    exp = Exporter(0)
    exp.start()
    port = exp.port
    exp.stop()
    exp.stop()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ExporterError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            Exporter(port).start()


async def test_windows_of_a_spread_run_count_like_their_records(exporter: Exporter) -> None:
    exporter.count(
        WindowStats(requests=7, errors={"timeout": 2}, prompt_tokens=700, completion_tokens=70)
    )
    exporter.count(WindowStats(requests=1, errors={"timeout": 1, "http_5xx": 1}))
    m = await scrape(exporter.url)
    assert m[("tmesh_requests_total", (("kind", "none"), ("status", "ok")))] == 8
    assert m[("tmesh_requests_total", (("kind", "timeout"), ("status", "error")))] == 3
    assert m[("tmesh_requests_total", (("kind", "http_5xx"), ("status", "error")))] == 1
    assert m[("tmesh_prompt_tokens_total", ())] == 700
    assert m[("tmesh_completion_tokens_total", ())] == 70
