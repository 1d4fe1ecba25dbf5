"""The end-of-run cache verdict: every branch of the conclusion, the first-visit correction of
hit rates, filling the summary, and the two simulated stacks the benchmark exists to tell apart."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest
from factories import SEED_SPEC, run_summary

from tmesh.bench.measure.servermetrics import (
    ServerMetricsScraper,
    ServerSample,
    default_metrics_url,
    run_view,
)
from tmesh.bench.measure.verdict import NOT_ENOUGH, cache_verdict, summarize_cache
from tmesh.results.records import MetricStats, RunSummary

SPEC = SEED_SPEC
GPU = 1_150_000  # tokens: the 1.95M-token working set is 1.7x this
COLD = MetricStats(count=61, mean=4.9, p50=4.72)
FAST = MetricStats(count=400, mean=0.43, p50=0.40)
SLOW = MetricStats(count=400, mean=4.6, p50=4.5)


def verdict(warm: MetricStats, **server: float):
    return cache_verdict(COLD, warm, SPEC, server or None)


def test_revisits_served_from_offload() -> None:
    v = verdict(FAST, gpu_hit_rate=0.03, external_hit_rate=0.95, gpu_capacity_tokens=GPU)
    assert v.conclusion == (
        "revisits are served from offload: TTFT 11.8x lower than first visits; the working set "
        "(1.95M tokens) is 1.7x the GPU KV capacity, so a GPU cache alone would have missed"
    )
    assert v.fits_gpu is False
    assert v.working_set_tokens == 61 * 32000
    assert v.working_set_bytes == 61 * 32000 * 49152
    assert v.warm_cold_ttft_ratio == pytest.approx(4.72 / 0.40)


def test_revisits_miss_without_offload() -> None:
    v = verdict(SLOW, gpu_hit_rate=0.02, gpu_capacity_tokens=GPU)
    assert v.conclusion == (
        "revisits miss: working set is 1.7x GPU KV capacity and no offload tier hit; "
        "TTFT of revisits ≈ first visits (1.05x)"
    )
    assert v.revisit_external_hit_rate is None


def test_revisits_miss_with_a_cold_offload_tier() -> None:
    v = verdict(SLOW, gpu_hit_rate=0.02, external_hit_rate=0.1, gpu_capacity_tokens=GPU)
    assert "the offload tier hit 10%" in v.conclusion


def test_not_enough_revisits() -> None:
    assert verdict(MetricStats(), gpu_hit_rate=0.9).conclusion == NOT_ENOUGH
    assert verdict(MetricStats(count=2, p50=0.4)).conclusion == NOT_ENOUGH
    early = cache_verdict(MetricStats(), FAST, SPEC, None)
    assert early.conclusion == NOT_ENOUGH
    assert early.warm_cold_ttft_ratio is None


def test_gpu_cache_serves_a_working_set_that_fits() -> None:
    v = verdict(FAST, gpu_hit_rate=0.97, gpu_capacity_tokens=4_000_000)
    assert v.fits_gpu is True
    assert v.conclusion.startswith("revisits are served from the GPU prefix cache (97% hit)")
    assert "does not exercise offloading" in v.conclusion


def test_gpu_cache_hits_although_the_working_set_overflows() -> None:
    v = verdict(FAST, gpu_hit_rate=0.8, gpu_capacity_tokens=GPU)
    assert "although the working set (1.95M tokens) is 1.7x the GPU KV capacity" in v.conclusion


def test_offload_hits_but_loading_is_no_faster_than_recompute() -> None:
    v = verdict(SLOW, gpu_hit_rate=0.0, external_hit_rate=0.9, gpu_capacity_tokens=GPU)
    assert v.conclusion == (
        "revisits hit the offload tier (90% of the tokens the GPU missed) but TTFT of revisits ≈ "
        "first visits (1.05x): loading them cost about as much as recomputing"
    )


def test_offload_serves_a_working_set_that_would_fit() -> None:
    v = verdict(FAST, gpu_hit_rate=0.1, external_hit_rate=0.9, gpu_capacity_tokens=3_000_000)
    assert "fits in the GPU KV cache (0.65x its capacity)" in v.conclusion


def test_offload_without_reported_capacity() -> None:
    v = verdict(FAST, gpu_hit_rate=0.1, external_hit_rate=0.9)
    assert v.fits_gpu is None and v.gpu_capacity_tokens is None
    assert v.conclusion.endswith("the server does not report its GPU KV capacity")


def test_miss_although_it_fits() -> None:
    v = verdict(SLOW, gpu_hit_rate=0.0, gpu_capacity_tokens=4_000_000)
    assert "fits in GPU KV capacity (0.49x), so prefix caching looks off" in v.conclusion


def test_miss_without_reported_capacity() -> None:
    v = verdict(SLOW, gpu_hit_rate=0.1)
    assert v.conclusion.startswith("revisits miss the server's caches (GPU 10%, no offload")


def test_mixed_tiers_count_together() -> None:
    """40 % from GPU plus 40 % of the rest from offload is 64 % cached: served, mostly by GPU."""
    v = verdict(FAST, gpu_hit_rate=0.4, external_hit_rate=0.4, gpu_capacity_tokens=GPU)
    assert v.conclusion.startswith("revisits are served from the GPU prefix cache (40% hit)")


def test_client_only_verdicts() -> None:
    assert verdict(FAST).conclusion == (
        "revisits are served from a cache: TTFT 11.8x lower than first visits; the server "
        "exposes no cache metrics to say which tier"
    )
    assert verdict(SLOW).conclusion.startswith("revisits are not served from a cache")


def test_mean_is_used_when_no_median() -> None:
    v = cache_verdict(MetricStats(count=5, mean=3.0), MetricStats(count=5, mean=1.5), SPEC, None)
    assert v.warm_cold_ttft_ratio == 2.0


def test_first_visit_lookups_are_taken_out_of_the_hit_rates() -> None:
    """One rotation of misses then one of hits: the run view says 50 %, revisits hit 100 %."""
    first_visits = 61 * 32000
    server = {
        "gpu_hit_tokens": 0.0,
        "gpu_query_tokens": 2.0 * first_visits,
        "gpu_hit_rate": 0.0,
        "external_hit_tokens": float(first_visits),
        "external_query_tokens": 2.0 * first_visits,
        "external_hit_rate": 0.5,
        "gpu_capacity_tokens": GPU,
    }
    v = cache_verdict(COLD, FAST, SPEC, server, first_visit_tokens=first_visits)
    assert v.revisit_external_hit_rate == 1.0
    assert v.revisit_gpu_hit_rate == 0.0
    assert v.conclusion.startswith("revisits are served from offload")


def summary(cold: MetricStats, warm: MetricStats) -> RunSummary:
    return run_summary(
        elapsed=120.0,
        total_requests=461,
        qps=3.8,
        input_token_throughput=123000.0,
        output_token_throughput=384.0,
        cold_ttft=cold,
        warm_ttft=warm,
        rotations=7,
    )


def test_summarize_cache_fills_the_summary() -> None:
    first = ServerSample(counters={"prefix_queries": 0.0, "prefix_hits": 0.0})
    last = ServerSample(
        counters={"prefix_queries": 8.0 * 61 * 32000, "prefix_hits": 7.0 * 61 * 32000},
        gauges={"gpu_capacity_tokens": 4_000_000.0},
    )
    result = summary(COLD, FAST)
    v = summarize_cache(result, SPEC, None, first, last)
    assert result.verdict == v.conclusion
    assert v.revisit_gpu_hit_rate == 1.0
    assert result.server is not None
    assert result.server["gpu_hit_rate"] == pytest.approx(7 / 8)
    assert result.server["revisit_gpu_hit_rate"] == 1.0
    assert result.server["working_set_tokens"] == 61 * 32000
    assert result.server["gpu_capacity_tokens"] == 4_000_000


def test_summarize_cache_without_server_metrics() -> None:
    result = summary(COLD, SLOW)
    summarize_cache(result, SPEC, None, None, None)
    assert result.server is None
    assert result.verdict is not None and "no cache metrics" in result.verdict


async def test_summarize_cache_notes_metrics_that_stopped() -> None:
    async with aiohttp.ClientSession() as session:
        scraper = ServerMetricsScraper("http://127.0.0.1:9/metrics", session, timeout=1)
        await scraper.scrape()
    sample = ServerSample(counters={"prefix_queries": 1.0, "prefix_hits": 0.0})
    result = summary(COLD, SLOW)
    summarize_cache(result, SPEC, scraper, sample, sample)
    assert result.verdict is not None
    assert "(server metrics stopped early: cannot reach" in result.verdict


# --- the simulated stacks ----------------------------------------------------------------------


async def simulated_verdict(profile: str, **overrides: float):
    """Four 6144-token contexts (2x a 12288-token GPU cache) visited three times in turn.

    TTFT comes from the engine's own histogram sums per rotation (one request at a time, real
    time scale so scheduling noise is not magnified), the server view from two scrapes of its
    /metrics. A cold prefill (~150 ms) dwarfs a CPU-tier load (~25 ms) and any such noise.
    """
    from tmesh.sim.profiles import PROFILES
    from tmesh.sim.server import start_simulator

    config = dataclasses.replace(
        PROFILES[profile], gpu_kv_tokens=12288, max_model_len=12288, jitter=0.0, **overrides
    )
    contexts = [[10_000 * (c + 1) + i for i in range(6144)] for c in range(4)]
    ttft = []
    async with aiohttp.ClientSession() as session, await start_simulator(config) as sim:
        scraper = ServerMetricsScraper(default_metrics_url(sim.url + "/v1"), session)
        first = await scraper.scrape()
        for visit in range(3):
            before = sim.engine.metrics.snapshot()
            for c, context in enumerate(contexts):
                body = {"model": config.model, "prompt": [*context, visit, c], "max_tokens": 2}
                async with session.post(sim.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                    await resp.read()
            after = sim.engine.metrics.snapshot()
            ttft.append(
                tuple(
                    after[f"vllm:time_to_first_token_seconds_{k}"]
                    - before.get(f"vllm:time_to_first_token_seconds_{k}", 0)
                    for k in ("sum", "count")
                )
            )
        last = await scraper.scrape()
    assert first is not None and last is not None
    cold = MetricStats(count=int(ttft[0][1]), mean=ttft[0][0] / ttft[0][1])
    warm_sum, warm_count = ttft[1][0] + ttft[2][0], ttft[1][1] + ttft[2][1]
    warm = MetricStats(count=int(warm_count), mean=warm_sum / warm_count)
    spec = dataclasses.replace(SPEC, num_contexts=4, input_length=6144, output_length=2)
    return cache_verdict(cold, warm, spec, run_view(first, last), first_visit_tokens=4 * 6144)


async def test_gpu_only_stack_misses_on_revisits() -> None:
    v = await simulated_verdict("gpu-only")
    assert v.fits_gpu is False
    assert v.revisit_gpu_hit_rate is not None and v.revisit_gpu_hit_rate < 0.1
    assert v.conclusion.startswith(
        "revisits miss: working set is 2.0x GPU KV capacity and no offload tier hit"
    )


async def test_cpu_offload_stack_serves_revisits_from_offload() -> None:
    v = await simulated_verdict("cpu-offload", cpu_offload_gb=2.0)
    assert v.revisit_external_hit_rate is not None and v.revisit_external_hit_rate > 0.9
    assert v.conclusion.startswith("revisits are served from offload: TTFT ")
    assert v.conclusion.endswith(
        "the working set (25k tokens) is 2.0x the GPU KV capacity, so a GPU cache alone would "
        "have missed"
    )
