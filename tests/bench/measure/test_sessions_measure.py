"""The sessions' figures: by turn, by idle gap (the survival curve), sessions finished; and the
recorder's schedule and goodput figures around them."""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import SEED_SPEC, request

from tmesh.bench.measure.goodput import Slo
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.measure.sessions import (
    SessionAggregate,
    parse_gap_buckets,
    survival_verdict,
)
from tmesh.results.catalogue.sessions import cached_share, gap_label
from tmesh.results.records import ClientHealth, RequestRecord, SessionSpec

SESSIONS_SPEC = replace(
    SEED_SPEC,
    workload="sessions",
    sessions=SessionSpec(system_prompt=1000, turns=3, turn_input=100, think_time=5.0),
)


def turn(
    session: int, number: int, t0: float, gap: float | None, cached: int, prompt: int = 1000,
    ttft: float = 0.1, **fields: object,
) -> RequestRecord:  # fmt: skip
    return request(
        t0, ttft=ttft, decode=0.2, session=session, turn=number, idle_gap=gap, t_intended=t0,
        prompt_tokens=prompt, cached_tokens=cached, completion_tokens=10, **fields,
    )  # fmt: skip


def test_gap_buckets_parse() -> None:
    assert parse_gap_buckets("5,30,120") == (5.0, 30.0, 120.0)
    assert parse_gap_buckets("1") == (1.0,)
    for bad in ("", "5,3", "0,5", "a,b", "5,inf"):
        with pytest.raises(ValueError, match="seconds"):
            parse_gap_buckets(bad)


def test_turns_fall_into_their_turn_and_gap() -> None:
    agg = SessionAggregate(turns=3, gap_edges=(5.0, 30.0))
    agg.add(turn(0, 1, 0.0, None, cached=0))
    agg.add(turn(0, 2, 10.0, 2.0, cached=900, ttft=0.05))
    agg.add(turn(0, 3, 50.0, 40.0, cached=100, ttft=0.4))
    agg.add(turn(1, 1, 1.0, None, cached=0))
    agg.add(turn(1, 2, 20.0, 10.0, cached=500, ttft=0.2))
    stats = agg.to_stats()
    assert [t.requests for t in stats.by_turn] == [2, 2, 1]
    assert [gap_label(g) for g in stats.by_gap] == ["0-5 s", "5-30 s", ">30 s"]
    assert [g.requests for g in stats.by_gap] == [1, 1, 1]
    assert [cached_share(g) for g in stats.by_gap] == [0.9, 0.5, 0.1]
    assert stats.by_gap[2].ttft.mean == pytest.approx(0.4)
    assert stats.by_turn[0].ttft.mean == pytest.approx(0.1)


def test_sessions_are_counted_when_they_end() -> None:
    agg = SessionAggregate(turns=3)
    agg.add(turn(0, 1, 0.0, None, cached=0))
    agg.add(turn(0, 2, 5.0, 1.0, cached=0))
    agg.add(turn(0, 3, 9.0, 1.0, cached=0))
    agg.add(turn(1, 1, 1.0, None, cached=0))
    agg.add(turn(1, 2, 6.0, 1.0, cached=0, error="http_5xx"))
    agg.add(turn(2, 1, 2.0, None, cached=0))
    stats = agg.to_stats()
    assert (stats.started, stats.completed, stats.abandoned) == (3, 1, 1)
    assert stats.mean_turns == pytest.approx((3 + 1) / 2)
    session_end = 9.0 + 0.1 + 0.2
    assert stats.duration.count == 1
    assert stats.duration.mean == pytest.approx(session_end, rel=1e-3)


def test_server_hit_rates_are_attributed_by_the_turns_of_each_interval() -> None:
    agg = SessionAggregate(turns=3, gap_edges=(5.0,))
    agg.add(turn(0, 2, 1.0, 1.0, cached=0))
    agg.add(turn(1, 2, 1.0, 1.0, cached=0))
    agg.close_interval({"gpu_hit_rate": 0.9})
    agg.add(turn(0, 3, 10.0, 9.0, cached=0))
    agg.add(turn(1, 3, 10.0, 1.0, cached=0))
    agg.close_interval({"gpu_hit_rate": 0.3, "external_hit_rate": 0.8})
    short, long = agg.to_stats().by_gap
    assert short.server_hit_rate == pytest.approx((0.9 * 2 + 0.3) / 3)
    assert short.server_external_hit_rate == pytest.approx(0.8)
    assert long.server_hit_rate == pytest.approx(0.3)


def test_a_share_needs_every_request_to_report_cached_tokens() -> None:
    agg = SessionAggregate(turns=2, gap_edges=(5.0,))
    agg.add(turn(0, 2, 1.0, 1.0, cached=500))
    agg.add(turn(1, 2, 1.0, 1.0, cached=None))  # type: ignore[arg-type]
    assert cached_share(agg.to_stats().by_gap[0]) is None


def test_the_verdict_reads_the_survival_curve() -> None:
    agg = SessionAggregate(turns=3, gap_edges=(5.0,))
    agg.add(turn(0, 1, 0.0, None, cached=0, ttft=1.0))
    agg.add(turn(0, 2, 5.0, 1.0, cached=950, ttft=0.1))
    agg.add(turn(0, 3, 50.0, 40.0, cached=200, ttft=0.8))
    verdict = survival_verdict(agg.to_stats())
    assert "95.0% after 0-5 s, 20.0% after >5 s" in verdict
    assert "(cold) 1.000 s, later turns' 0.4500 s" in verdict
    assert "nothing to say" in survival_verdict(SessionAggregate(turns=3).to_stats())


def test_the_recorder_counts_goodput_lateness_and_sends() -> None:
    recorder = Recorder(SESSIONS_SPEC, slo=Slo(ttft=0.5))
    recorder.add(turn(0, 1, 0.0, None, cached=0, ttft=0.1))
    recorder.add(turn(1, 1, 1.0, None, cached=0, ttft=0.9))
    recorder.add(replace(turn(2, 1, 2.5, None, cached=0, ttft=0.1), t_intended=2.0))
    recorder.add(turn(3, 1, 4.0, None, cached=0, error="timeout"))
    snap = recorder.snapshot(5.0, health=ClientHealth(cap_hits=2, scheduled=True))
    assert snap.interval_stats.good_requests == 1
    assert snap.slo == {"ttft": 0.5}
    assert snap.interval_stats.lateness.max == pytest.approx(0.5)
    assert snap.sessions is not None and snap.sessions.started == 4
    summary = recorder.summary(6.0, "duration", "now")
    assert summary.sent_requests == 4
    assert summary.request_rate == pytest.approx(4 / 4.0)
    assert summary.cap_hits == 2
    assert summary.overall.good_requests == 1
    assert summary.overall.ttft_from_intended.mean == pytest.approx((0.1 + 0.9 + 0.6) / 3)
    assert summary.overall.ttft.mean == pytest.approx((0.1 + 0.9 + 0.1) / 3)
    assert summary.rotations == 0
