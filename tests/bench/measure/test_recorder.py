"""Recorder: DESIGN's definitions on hand-built records; windows, cold/warm, warm-up, rotations."""

from __future__ import annotations

import tracemalloc

import pytest
from factories import request

from tmesh.bench.measure.recorder import Recorder
from tmesh.results.records import ClientHealth, RequestRecord, WorkloadSpec

SPEC = WorkloadSpec(
    model="m",
    num_contexts=3,
    questions_per_context=3,
    max_inflight=2,
    input_length=1000,
    output_length=11,
)


def ok(
    t0: float,
    ttft: float,
    decode: float,
    *,
    context: int = 0,
    visit: int = 0,
    prompt: int = 1000,
    completion: int = 11,
    tail: float = 0.0,
    cached: int | None = None,
) -> RequestRecord:
    """A successful request: first token after `ttft`, last after a further `decode` seconds."""
    return request(
        t0,
        ttft,
        decode,
        tail,
        context_id=context,
        visit=visit,
        prompt_tokens=prompt,
        completion_tokens=completion,
        usage_reported=True,
        cached_tokens=cached,
    )


def failed(t0: float, kind: str, *, context: int = 0, visit: int = 0) -> RequestRecord:
    """A failed request with partial timings that must not leak into any metric."""
    return request(
        t0,
        context_id=context,
        visit=visit,
        t_first=t0 + 100.0,
        t_last=t0 + 200.0,
        t_end=t0 + 300.0,
        prompt_tokens=5,
        completion_tokens=3,
        error=kind,
    )


def test_global_means_follow_design_definitions() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5, prompt=1000, completion=11, tail=0.1))
    rec.add(ok(0.0, 2.0, 1.0, prompt=3000, completion=6, tail=0.2))
    snap = rec.snapshot(5.0)
    g = snap.global_stats
    assert g.requests == 2
    assert g.ttft.mean == pytest.approx((1.0 + 2.0) / 2)
    assert g.itl.mean == pytest.approx((0.5 / 10 + 1.0 / 5) / 2)
    assert g.e2e.mean == pytest.approx((1.6 + 3.2) / 2)
    assert g.prefill_throughput.mean == pytest.approx((1000 / 1.0 + 3000 / 2.0) / 2)
    assert g.decode_throughput.mean == pytest.approx((10 / 0.5 + 5 / 1.0) / 2)
    assert (g.prompt_tokens, g.completion_tokens) == (4000, 17)
    assert snap.qps == pytest.approx(2 / 5.0)
    assert snap.total_requests == 2


def test_one_token_answer_has_ttft_but_no_itl_or_decode_rate() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.0, completion=1))
    g = rec.snapshot(1.0).global_stats
    assert (g.ttft.count, g.e2e.count, g.itl.count, g.decode_throughput.count) == (1, 1, 0, 0)


def test_an_answer_read_in_one_piece_has_no_itl_rather_than_zero() -> None:
    """All tokens in one network read: no gap was observed, so ITL and decode rate are unknown
    and stay out of their statistics (a 0 would pull the minimum and the mean down)."""
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.0, completion=50))
    rec.add(ok(0.0, 1.0, 0.5, completion=11))
    g = rec.snapshot(1.0).global_stats
    assert (g.ttft.count, g.itl.count, g.decode_throughput.count) == (2, 1, 1)
    assert g.itl.min == pytest.approx(0.05)


def test_cached_tokens_summed_only_when_reported() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5, cached=800))
    rec.add(ok(0.0, 1.0, 0.5, cached=None))
    rec.add(ok(0.0, 1.0, 0.5, cached=0))
    g = rec.snapshot(1.0).global_stats
    assert (g.cached_tokens, g.cached_tokens_reported) == (800, 2)


def test_interval_covers_records_since_previous_snapshot() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5))
    rec.add(ok(0.0, 3.0, 0.5))
    first = rec.snapshot(5.0)
    rec.add(ok(5.0, 5.0, 0.5))
    second = rec.snapshot(10.0)
    assert (first.index, second.index) == (0, 1)
    assert (first.interval_seconds, second.interval_seconds) == (5.0, 5.0)
    assert first.interval_stats.requests == 2
    assert first.interval_stats.ttft.mean == pytest.approx(2.0)
    assert second.interval_stats.requests == 1
    assert second.interval_stats.ttft.mean == pytest.approx(5.0)
    assert second.global_stats.requests == 3
    assert second.global_stats.ttft.mean == pytest.approx(3.0)
    assert second.qps == pytest.approx(3 / 10.0)


def test_empty_interval_keeps_global_figures() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5))
    rec.snapshot(5.0)
    snap = rec.snapshot(10.0)
    assert snap.interval_stats.requests == 0
    assert snap.interval_stats.ttft.mean is None
    assert snap.global_stats.ttft.mean == pytest.approx(1.0)


def test_cold_warm_split_by_visit_overall_and_per_interval() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 4.0, 0.5, context=0, visit=0))
    rec.add(ok(0.0, 6.0, 0.5, context=1, visit=0))
    rec.add(ok(0.0, 1.0, 0.5, context=0, visit=1))
    first = rec.snapshot(5.0)
    rec.add(ok(5.0, 0.5, 0.5, context=1, visit=2))
    second = rec.snapshot(10.0)
    assert (first.cold_ttft.count, first.cold_ttft.mean) == (2, pytest.approx(5.0))
    assert (first.warm_ttft.count, first.warm_ttft.mean) == (1, pytest.approx(1.0))
    assert second.warm_ttft.mean == pytest.approx(0.75)
    assert second.interval_cold_ttft.count == 0
    assert (second.interval_warm_ttft.count, second.interval_warm_ttft.mean) == (1, 0.5)


def test_warmup_excludes_early_finishers_from_steady_state_only() -> None:
    rec = Recorder(SPEC, warmup_seconds=10.0)
    rec.add(ok(0.0, 4.0, 0.5))
    rec.snapshot(5.0)
    rec.add(ok(8.0, 1.5, 0.5))
    rec.add(failed(2.0, "timeout"))
    rec.snapshot(12.0)
    rec.add(ok(15.0, 2.0, 0.5, prompt=500, completion=3))
    summary = rec.summary(20.0, "duration", "2026-01-01T00:00:00+00:00")
    assert summary.overall.requests == 3
    assert summary.steady.requests == 2
    assert summary.steady.ttft.mean == pytest.approx((1.5 + 2.0) / 2)
    assert summary.steady.errors == {"timeout": 1}
    assert summary.steady_qps == pytest.approx(2 / 10.0)
    assert summary.steady_input_token_throughput == pytest.approx(1500 / 10.0)
    assert summary.steady_output_token_throughput == pytest.approx(14 / 10.0)
    assert summary.warmup_seconds == 10.0


def test_without_warmup_steady_equals_overall() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5))
    rec.snapshot(5.0)
    rec.add(ok(5.0, 2.0, 0.5))
    summary = rec.summary(8.0, "signal", "t")
    assert summary.steady == summary.overall
    assert summary.steady_qps == summary.qps


def test_failures_counted_by_kind_and_kept_out_of_metrics() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5))
    rec.add(failed(0.0, "http_5xx"))
    rec.add(failed(0.0, "http_5xx"))
    first = rec.snapshot(5.0)
    rec.add(failed(5.0, "stream_cut"))
    second = rec.snapshot(10.0)
    assert first.global_stats.errors == {"http_5xx": 2}
    assert first.global_stats.requests == 1
    assert first.global_stats.ttft.max == pytest.approx(1.0)
    assert first.global_stats.prompt_tokens == 1000
    assert second.interval_stats.errors == {"stream_cut": 1}
    assert second.global_stats.errors == {"http_5xx": 2, "stream_cut": 1}
    assert second.qps == pytest.approx(1 / 10.0)
    summary = rec.summary(10.0, "duration", "t")
    assert (summary.total_requests, summary.failed_requests) == (1, 3)


def test_rotations_complete_when_every_context_is_served_again() -> None:
    """Only a visit that succeeded counts: a run whose requests all fail completes none."""
    rec = Recorder(SPEC)
    for context in (0, 1):
        rec.add(ok(0.0, 1.0, 0.5, context=context, visit=0))
    assert rec.rotations == 0
    rec.add(failed(0.0, "timeout", context=2, visit=0))
    assert rec.rotations == 0
    rec.add(ok(0.5, 1.0, 0.5, context=2, visit=0))
    assert rec.rotations == 1
    rec.add(ok(1.0, 1.0, 0.5, context=0, visit=1))
    rec.add(ok(1.0, 1.0, 0.5, context=2, visit=2))
    rec.add(ok(1.0, 1.0, 0.5, context=0, visit=2))
    assert rec.rotations == 1
    rec.add(ok(1.0, 1.0, 0.5, context=1, visit=1))
    assert rec.rotations == 2
    rec.add(ok(1.0, 1.0, 0.5, context=2, visit=1))
    assert rec.rotations == 2
    rec.add(ok(1.0, 1.0, 0.5, context=1, visit=2))
    assert rec.rotations == 3
    assert rec.snapshot(5.0).rotations == 3


def test_summary_includes_records_after_last_snapshot_and_token_rates() -> None:
    rec = Recorder(SPEC)
    rec.add(ok(0.0, 1.0, 0.5, prompt=1000, completion=11))
    rec.snapshot(5.0)
    rec.add(ok(5.0, 3.0, 0.5, prompt=2000, completion=9))
    summary = rec.summary(10.0, "max_requests", "2026-01-01T00:00:00+00:00")
    assert summary.total_requests == 2
    assert summary.overall.ttft.mean == pytest.approx(2.0)
    assert summary.qps == pytest.approx(0.2)
    assert summary.input_token_throughput == pytest.approx(300.0)
    assert summary.output_token_throughput == pytest.approx(2.0)
    assert summary.cold_ttft.count == 2
    assert (summary.stop_reason, summary.started_at, summary.elapsed) == (
        "max_requests",
        "2026-01-01T00:00:00+00:00",
        10.0,
    )
    assert rec.snapshot(11.0).interval_stats.requests == 1


def test_health_and_server_carried_to_snapshot_and_summary() -> None:
    rec = Recorder(SPEC)
    assert rec.snapshot(5.0).health == ClientHealth(inflight_target=SPEC.max_inflight)
    health = ClientHealth(inflight_mean=1.8, inflight_target=2, dispatch_delay_ms=0.2)
    snap = rec.snapshot(10.0, server={"kv_cache_usage": 0.5}, health=health)
    assert snap.health == health
    summary = rec.summary(10.0, "signal", "t")
    assert summary.health == health
    assert summary.server == {"kv_cache_usage": 0.5}


def test_zero_elapsed_gives_zero_rates() -> None:
    assert Recorder(SPEC).snapshot(0.0).qps == 0.0


def test_memory_does_not_grow_with_records() -> None:
    """Neither live memory nor the peak grows once the aggregates exist: nothing per record or
    per interval is kept or allocated (discarded histograms would pile up as GC cycles)."""
    rec = Recorder(SPEC)

    def feed(n: int, start: int) -> None:
        for i in range(start, start + n):
            record = ok(i * 0.01, 0.5 + (i % 97) / 100, 0.3, context=i % 3, visit=i // 3)
            rec.add(record)
            if i % 500 == 499:
                rec.snapshot(i * 0.01)

    tracemalloc.start()
    try:
        feed(1_000, 0)
        first_current, first_peak = tracemalloc.get_traced_memory()
        feed(5_000, 1_000)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - first_current < 100_000
    assert peak - first_peak < 100_000


def test_first_message_of_each_error_kind_once() -> None:
    rec = Recorder(SPEC)
    first = failed(0.0, "http_4xx", context=0, visit=0)
    first.error_detail = "HTTP 400 Bad Request: prompt too long"
    again = failed(0.1, "http_4xx", context=1, visit=0)
    again.error_detail = "HTTP 400 Bad Request: another message"
    rec.add(first)
    rec.add(again)
    assert rec.snapshot(5.0).error_messages == {"http_4xx": "HTTP 400 Bad Request: prompt too long"}
    rec.add(failed(5.1, "timeout", context=2, visit=0))
    assert rec.snapshot(10.0).error_messages == {"timeout": "timeout"}
    assert rec.snapshot(15.0).error_messages == {}
    assert rec.summary(15.0, "duration", "t").error_messages == {
        "http_4xx": "HTTP 400 Bad Request: prompt too long",
        "timeout": "timeout",
    }
