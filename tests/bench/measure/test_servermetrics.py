"""Server /metrics parsing on exposition texts of vLLM, SGLang and LMCache, interval arithmetic,
and the scraper against real HTTP servers on loopback (a fixture server, a restarting one, a
missing endpoint, and the simulated engine checked against its own counters)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from net_helpers import refused_url, serve_app
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tmesh.bench.measure.prometheus import MetricsFormatError, ServerSample, parse_server_metrics
from tmesh.bench.measure.servermetrics import (
    ServerMetricsScraper,
    default_metrics_url,
    interval_view,
    run_view,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "metrics"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def exposition(**values: float) -> str:
    """A vLLM-shaped text with the given counters (`prefix_cache_queries=...`), written by
    prometheus_client itself, so the `_total`/`_created` spelling is the real one."""
    registry = CollectorRegistry()
    labels = {"model_name": "m", "engine": "0"}
    for name, value in values.items():
        if name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc"):
            Gauge(f"vllm:{name}", name, list(labels), registry=registry).labels(**labels).set(value)
        else:
            counter = Counter(f"vllm:{name}", name, list(labels), registry=registry)
            counter.labels(**labels).inc(value)
    return generate_latest(registry).decode()


# --- parsing the fixtures ---------------------------------------------------------------------


def test_vllm_offload_sums_both_engines() -> None:
    sample = parse_server_metrics(fixture("vllm-offload-dp2.txt"))
    c, g = sample.counters, sample.gauges
    assert c["prefix_queries"] == 4_012_800 + 3_884_160
    assert c["prefix_hits"] == 1_203_840 + 1_118_720
    assert c["external_queries"] == (4_012_800 - 1_203_840) + (3_884_160 - 1_118_720)
    assert c["external_hits"] == 2_176_000 + 2_089_600
    assert c["prompt_tokens"] == 4_012_800 + 3_884_160
    assert c["generation_tokens"] == (125 + 121) * 100
    assert c["preemptions"] == 3
    assert c["computed_prompt_tokens"] == (4_012_800 - 1_203_840 - 2_176_000) + (
        3_884_160 - 1_118_720 - 2_089_600
    )
    assert g["running"] == 13 and g["waiting"] == 7
    assert g["kv_usage_perc"] == pytest.approx((0.8734 + 0.9102) / 2)
    assert g["gpu_capacity_tokens"] == 2 * 71_875 * 16


def test_vllm_offload_bytes_not_doubled_by_deprecated_alias() -> None:
    """The flat and the transfer_type-labelled byte counters are the same bytes written twice."""
    c = parse_server_metrics(fixture("vllm-offload-dp2.txt")).counters
    assert c["offload_load_bytes"] == (2_176_000 + 2_089_600) * 49152
    assert c["offload_store_bytes"] == (4_012_800 + 3_884_160) * 49152 / 2


def test_deprecated_offload_bytes_alone_count_only_loads_towards_gpu() -> None:
    text = "\n".join(
        f'vllm:kv_offload_total_bytes_total{{engine="0",transfer_type="{kind}"}} {value}'
        for kind, value in (("CPU_to_GPU", 100), ("GPU_to_CPU", 7), ("SHARED_STORAGE_to_GPU", 20))
    )
    c = parse_server_metrics(text).counters
    assert c["offload_load_bytes"] == 120
    assert c["offload_store_bytes"] == 7


def test_vllm_dual_names_are_aliases_not_added() -> None:
    sample = parse_server_metrics(fixture("vllm-0.10-dual-names.txt"))
    assert sample.counters["prefix_queries"] == 2_080_000
    assert sample.counters["prefix_hits"] == 1_490_000
    assert sample.gauges["kv_usage_perc"] == pytest.approx(0.6621)
    assert sample.gauges["gpu_capacity_tokens"] == 40_960 * 16
    assert "external_queries" not in sample.counters


def test_vllm_old_names_alone() -> None:
    text = exposition(gpu_prefix_cache_queries=1000, gpu_prefix_cache_hits=250)
    text += 'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5\n'
    sample = parse_server_metrics(text)
    assert sample.counters["prefix_queries"] == 1000
    assert sample.counters["prefix_hits"] == 250
    assert sample.gauges["kv_usage_perc"] == 0.5


def test_counters_without_total_suffix_and_without_type_lines() -> None:
    text = 'vllm:prefix_cache_queries{engine="0"} 10\nvllm:prefix_cache_hits{engine="0"} 4\n'
    assert interval_view(None, parse_server_metrics(text))["gpu_hit_rate"] == 0.4


def test_lmcache_fixture() -> None:
    sample = parse_server_metrics(fixture("vllm-lmcache.txt"))
    view = interval_view(None, sample)
    assert view["lmcache_hit_rate"] == pytest.approx(2_040_000 / (3_264_000 - 652_800))
    assert view["external_hit_rate"] == pytest.approx(2_040_000 / (3_264_000 - 652_800))
    assert view["gpu_hit_rate"] == pytest.approx(0.2)
    assert "offload_load_bytes" not in view
    assert sample.counters["lmcache_stored_tokens"] == 7_421_184
    assert sample.gauges["lmcache_local_cache_bytes"] == 96_636_764_160


def test_sglang_fixture_splits_device_and_host_hits() -> None:
    sample = parse_server_metrics(fixture("sglang-hicache.txt"))
    view = interval_view(None, sample)
    prompt, device, host = 96 * 32000, 1_296_384, 1_088_000
    assert view["prompt_tokens"] == prompt
    assert view["gpu_hit_tokens"] == device
    assert view["gpu_hit_rate"] == pytest.approx(device / prompt)
    assert view["external_hit_tokens"] == host
    assert view["external_hit_rate"] == pytest.approx(host / (prompt - device))
    assert view["sglang_cache_hit_rate"] == pytest.approx(0.4218)
    assert view["running"] == 9 and view["waiting"] == 1 and view["preemptions"] == 3
    assert view["kv_usage_perc"] == pytest.approx(0.6392)
    assert sample.gauges["gpu_capacity_tokens"] == 471_258


def test_sglang_without_hits_yet_reports_zero_not_missing() -> None:
    text = 'sglang:prompt_tokens_total{model_name="m"} 5000\n'
    view = interval_view(None, parse_server_metrics(text))
    assert view["gpu_hit_tokens"] == 0 and view["gpu_hit_rate"] == 0
    assert "external_hit_rate" not in view


@pytest.mark.skipif(
    not (FIXTURES / "vllm-real.txt").exists(), reason="no capture from a real vLLM server yet"
)
def test_real_vllm_capture() -> None:
    sample = parse_server_metrics(fixture("vllm-real.txt"))
    assert {"prefix_queries", "prefix_hits", "prompt_tokens"} <= sample.counters.keys()
    assert {"running", "waiting", "kv_usage_perc"} <= sample.gauges.keys()
    assert sample.gauges["gpu_capacity_tokens"] > 0


def test_other_exporters_give_an_empty_sample() -> None:
    text = "# TYPE process_open_fds gauge\nprocess_open_fds 6.0\n"
    assert not parse_server_metrics(text)


@pytest.mark.parametrize(
    "body", ["<html><body>Not Found</body></html>", '{"detail": "Not Found"}', "hello world"]
)
def test_non_prometheus_text_is_an_error(body: str) -> None:
    with pytest.raises(MetricsFormatError):
        parse_server_metrics(body)


# --- interval arithmetic ------------------------------------------------------------------------


def test_interval_view_takes_counter_deltas_and_current_gauges() -> None:
    before = parse_server_metrics(
        exposition(prefix_cache_queries=1000, prefix_cache_hits=100, num_requests_running=9)
    )
    after = parse_server_metrics(
        exposition(prefix_cache_queries=1600, prefix_cache_hits=550, num_requests_running=4)
    )
    view = interval_view(before, after)
    assert view["gpu_hit_tokens"] == 450
    assert view["gpu_hit_rate"] == pytest.approx(450 / 600)
    assert view["running"] == 4


def test_interval_view_keys_are_the_documented_ones() -> None:
    sample = parse_server_metrics(fixture("vllm-offload-dp2.txt"))
    assert set(interval_view(None, sample)) == {
        "gpu_hit_rate",
        "external_hit_rate",
        "kv_usage_perc",
        "running",
        "waiting",
        "preemptions",
        "offload_load_bytes",
        "prompt_tokens",
        "external_hit_tokens",
        "gpu_hit_tokens",
    }


def test_no_lookups_in_the_interval_leaves_the_rate_out() -> None:
    sample = parse_server_metrics(exposition(prefix_cache_queries=500, prefix_cache_hits=50))
    view = interval_view(sample, sample)
    assert view["gpu_hit_tokens"] == 0
    assert "gpu_hit_rate" not in view


def test_counter_reset_counts_the_new_value_as_the_delta() -> None:
    before = parse_server_metrics(exposition(prefix_cache_queries=90_000, prefix_cache_hits=80_000))
    after = parse_server_metrics(exposition(prefix_cache_queries=2000, prefix_cache_hits=500))
    view = interval_view(before, after)
    assert view["gpu_hit_tokens"] == 500
    assert view["gpu_hit_rate"] == 0.25


def test_run_view_totals_and_capacity() -> None:
    first = ServerSample()
    last = parse_server_metrics(fixture("vllm-offload-dp2.txt"))
    view = run_view(first, last)
    assert view["gpu_query_tokens"] == 4_012_800 + 3_884_160
    assert view["external_query_tokens"] == last.counters["external_queries"]
    assert view["gpu_capacity_tokens"] == 2_300_000
    assert view["computed_prompt_tokens"] == last.counters["computed_prompt_tokens"]
    assert "running" not in view


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/metrics"),
        ("https://api.example.com/v1", "https://api.example.com/metrics"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/metrics"),
    ],
)
def test_default_metrics_url_is_at_the_root(base: str, expected: str) -> None:
    assert default_metrics_url(base) == expected


# --- the scraper over HTTP ----------------------------------------------------------------------


class Responder:
    """A loopback HTTP server whose /metrics answers come from a queue of (status, body)."""

    def __init__(self, answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        status, body = self.answers[min(self.hits, len(self.answers)) - 1]
        return web.Response(status=status, text=body, content_type="text/plain")


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., object]]:
    async with contextlib.AsyncExitStack() as servers:

        async def start(handler: Callable[[web.Request], object]) -> str:
            app = web.Application()
            app.router.add_get("/metrics", handler)
            return f"{await servers.enter_async_context(serve_app(app))}/metrics"

        yield start


async def test_scraper_reads_a_fixture_over_http(serve, session) -> None:
    url = await serve(Responder([(200, fixture("sglang-hicache.txt"))]).handle)
    sample = await ServerMetricsScraper(url, session).scrape()
    assert sample is not None
    assert sample.counters["prompt_tokens"] == 96 * 32000


async def test_scraper_across_a_server_restart(serve, session) -> None:
    answers = [
        (200, exposition(prefix_cache_queries=50_000, prefix_cache_hits=40_000)),
        (200, exposition(prefix_cache_queries=60_000, prefix_cache_hits=45_000)),
        (200, exposition(prefix_cache_queries=3_000, prefix_cache_hits=1_000)),
    ]
    scraper = ServerMetricsScraper(await serve(Responder(answers).handle), session)
    first, second, third = [await scraper.scrape() for _ in answers]
    assert interval_view(first, second)["gpu_hit_rate"] == 0.5
    assert interval_view(second, third)["gpu_hit_tokens"] == 1_000
    assert interval_view(second, third)["gpu_hit_rate"] == pytest.approx(1 / 3)


async def test_scraper_without_metrics_endpoint_stops_and_keeps_the_reason(serve, session) -> None:
    """Saying it once is the benchmark's job (tests/bench/test_run.py); the scraper keeps the
    reason so the caller can say it, and the verdict can mention it, at any time."""
    responder = Responder([(404, "Not Found")])
    scraper = ServerMetricsScraper(await serve(responder.handle), session)
    assert await scraper.scrape() is None
    assert scraper.unavailable_reason is not None and "404" in scraper.unavailable_reason
    assert await scraper.scrape() is None
    assert "404" in (scraper.unavailable_reason or "")
    assert responder.hits == 1 and scraper.stopped


async def test_scraper_retries_after_a_server_error(serve, session) -> None:
    responder = Responder([(503, "busy"), (200, exposition(prefix_cache_queries=1))])
    scraper = ServerMetricsScraper(await serve(responder.handle), session)
    assert await scraper.scrape() is None
    assert "HTTP 503" in (scraper.unavailable_reason or "")
    assert await scraper.scrape() is not None
    assert scraper.unavailable_reason is None and not scraper.stopped


async def test_scraper_on_an_html_page_stops(serve, session) -> None:
    responder = Responder([(200, "<html><body>dashboard</body></html>")])
    scraper = ServerMetricsScraper(await serve(responder.handle), session)
    assert await scraper.scrape() is None
    assert "not Prometheus" in (scraper.unavailable_reason or "")
    await scraper.scrape()
    assert responder.hits == 1


async def test_scraper_refused_connection_is_retried(session) -> None:
    with refused_url() as url:
        scraper = ServerMetricsScraper(f"{url}/metrics", session)
        assert await scraper.scrape() is None
    assert "cannot reach" in (scraper.unavailable_reason or "")
    assert not scraper.stopped


async def test_scraper_times_out_without_raising_and_retries(serve, session) -> None:
    release = asyncio.Event()
    calls = 0

    async def slow_once(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
        return web.Response(text=exposition(prefix_cache_queries=1), content_type="text/plain")

    scraper = ServerMetricsScraper(await serve(slow_once), session, timeout=0.2)
    try:
        assert await scraper.scrape() is None
    finally:
        release.set()
    assert "did not answer within 0.2 s" in (scraper.unavailable_reason or "")
    assert await scraper.scrape() is not None
    assert scraper.unavailable_reason is None


async def test_scraper_sends_headers(serve, session) -> None:
    seen: list[str | None] = []

    async def check(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(text=exposition(prefix_cache_queries=1), content_type="text/plain")

    url = await serve(check)
    await ServerMetricsScraper(url, session, {"Authorization": "Bearer sk-1"}).scrape()
    assert seen == ["Bearer sk-1"]


# --- against the simulated engine ---------------------------------------------------------------


async def test_interval_rates_equal_the_simulated_engines_own_counters(session) -> None:
    from tmesh.sim.profiles import PROFILES
    from tmesh.sim.server import start_simulator

    config = dataclasses.replace(
        PROFILES["fast"], gpu_kv_tokens=4096, max_model_len=4096, cpu_offload_gb=1.0
    )
    contexts = [[1000 * (c + 1) + i for i in range(1536)] for c in range(4)]
    async with await start_simulator(config) as sim:
        scraper = ServerMetricsScraper(default_metrics_url(sim.url + "/v1"), session)
        engine_before, before = sim.engine.metrics.snapshot(), await scraper.scrape()
        for visit in range(3):
            for c, context in enumerate(contexts):
                prompt = [*context, 7, visit, c]
                body = {"model": config.model, "prompt": prompt, "max_tokens": 2}
                async with session.post(sim.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                    await resp.read()
        engine_after, after = sim.engine.metrics.snapshot(), await scraper.scrape()
    assert before is not None and after is not None

    def delta(key: str) -> float:
        return engine_after.get(key, 0) - engine_before.get(key, 0)

    view = interval_view(before, after)
    assert view["gpu_hit_tokens"] == delta("vllm:prefix_cache_hits_total")
    assert view["gpu_hit_rate"] == delta("vllm:prefix_cache_hits_total") / delta(
        "vllm:prefix_cache_queries_total"
    )
    assert view["external_hit_tokens"] == delta("vllm:external_prefix_cache_hits_total")
    assert view["external_hit_rate"] == delta("vllm:external_prefix_cache_hits_total") / delta(
        "vllm:external_prefix_cache_queries_total"
    )
    assert view["external_hit_tokens"] > 0
    assert view["offload_load_bytes"] == delta("vllm:kv_offload_load_bytes_total")
    assert view["prompt_tokens"] == delta("vllm:prompt_tokens_total") == 12 * 1539
    assert after.gauges["gpu_capacity_tokens"] == 4096


def test_llamacpp_prompt_cache_counts_as_the_gpu_tier() -> None:
    """llama.cpp counts computed and cached prompt tokens apart: together they are the prompt
    tokens, and the cached ones the prompt cache's hits (a capture of a real llama-server)."""
    first = parse_server_metrics(fixture("llamacpp.txt"))
    assert first.counters["prompt_tokens"] == 61926 + 49800
    assert first.counters["computed_prompt_tokens"] == 61926
    assert first.counters["generation_tokens"] == 7746
    assert (first.gauges["running"], first.gauges["waiting"]) == (0, 0)
    later = fixture("llamacpp.txt").replace(" 61926", " 62926").replace(" 49800", " 53800")
    view = run_view(first, parse_server_metrics(later))
    assert view["gpu_hit_tokens"] == 4000
    assert view["gpu_query_tokens"] == 5000
    assert view["gpu_hit_rate"] == pytest.approx(0.8)
    assert view["computed_prompt_tokens"] == 1000
