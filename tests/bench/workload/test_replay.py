"""A trace as plans: order, contexts and visits, per-request output lengths, arrival times with a
time scale and a loop, and the segments the ideal-cache score sees."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tmesh.bench.measure.idealcache import IdealCache
from tmesh.bench.workload.replay import Replay, prepare_replay
from tmesh.bench.workload.schedule import OVERHEAD_KEY
from tmesh.bench.workload.tokens import LocalTokenizer
from tmesh.bench.workload.trace import load_trace


@pytest.fixture(scope="module")
def replay(bpe_path: Path) -> Replay:
    trace = load_trace(Path("sample:mooncake"))
    return asyncio.run(prepare_replay(trace, LocalTokenizer(str(bpe_path)), max_requests=10))


def test_plans_follow_the_trace(replay: Replay) -> None:
    plans = list(replay.plans())
    rows = replay.trace.requests
    assert len(plans) == 10
    for plan, row in zip(plans, rows, strict=False):
        assert plan.expected_prompt_tokens == row.input_length
        assert plan.max_tokens == row.output_length
        assert plan.question == ""
        assert plan.question_id == plan.index
    firsts = [row.hash_ids[0] for row in rows[:10]]
    for plan in plans:
        earlier = firsts[: plan.index].count(firsts[plan.index])
        assert plan.visit == earlier
        same = [p.context_id for p in plans if firsts[p.index] == firsts[plan.index]]
        assert set(same) == {plan.context_id}
    assert replay.num_contexts == len(set(firsts))


def test_a_loop_goes_round_again_with_its_indices_counting_on(replay: Replay) -> None:
    replay.loop = True
    try:
        plans = list(itertools.islice(replay.plans(), 25))
        times = list(itertools.islice(replay.arrivals(), 25))
    finally:
        replay.loop = False
    assert [p.index for p in plans] == list(range(25))
    assert [p.rotation for p in plans] == [0] * 10 + [1] * 10 + [2] * 5
    assert plans[10].context == plans[0].context and plans[10].visit > plans[0].visit
    assert times == sorted(times)
    span = replay.trace.requests[9].arrival
    assert times[10] == pytest.approx(span + span / 9)


def test_the_time_scale_divides_arrivals(replay: Replay) -> None:
    replay.time_scale = 2.0
    try:
        times = list(replay.arrivals())
    finally:
        replay.time_scale = 1.0
    assert times == [r.arrival / 2 for r in replay.trace.requests[:10]]


def test_segments_carry_the_blocks_and_the_overhead(replay: Replay) -> None:
    replay.overhead = 1
    try:
        segments = list(replay.segments())
        text = replay.describe()
    finally:
        replay.overhead = 0
    index, first, tokens = segments[0]
    assert index == 0 and first[0] == (OVERHEAD_KEY, 1)
    assert tokens == replay.trace.requests[0].input_length + 1
    assert sum(n for _, n in first) == tokens
    assert "Trace: " in text and "mooncake, 512-token blocks" in text and "0 off" in text
    cache = IdealCache(None)
    hits = [cache.visit(s, n).infinite for _, s, n in segments]
    assert hits[0] == 0 and any(hits)
