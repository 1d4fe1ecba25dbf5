"""The ideal caches: LRU and infinite prefix caches over segment streams, the per-request labels,
and the run's figures."""

from __future__ import annotations

from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st

from tmesh.bench.measure.idealcache import (
    IdealCache,
    Prediction,
    Predictor,
    PrefixCache,
    ReuseScore,
    SessionPredictor,
    cache_geometry,
    measured_hit_rate,
    reuse_efficiency,
    reuse_figures,
)
from tmesh.bench.measure.prometheus import KV_BLOCK_SIZE, ServerSample
from tmesh.results.catalogue import server as figures
from tmesh.results.records import RequestRecord

Segments = list[tuple[Hashable, int]]


def _chain(*ids: int, size: int = 10) -> Segments:
    return [(i, size) for i in ids]


def test_a_prefix_is_hit_only_up_to_the_first_missing_segment() -> None:
    cache = PrefixCache(None)
    assert cache.visit(_chain(1, 2, 3)) == 0
    assert cache.visit(_chain(1, 2, 3)) == 30
    assert cache.visit(_chain(1, 4, 3)) == 10  # 3 is held, but not reachable past 4
    assert cache.visit(_chain(5, 2, 3)) == 0


def test_unshared_segments_take_room_in_the_lru_but_are_never_hit() -> None:
    lru = PrefixCache(30)
    lru.visit([(1, 10), (None, 15)])
    assert lru.visit([(1, 10), (None, 15)]) == 10
    assert lru.tokens <= 30
    infinite = PrefixCache(None)
    infinite.visit([(None, 10)])
    assert infinite.tokens == 0


def test_lru_evicts_the_least_recent_and_keeps_a_request_prefix_longest() -> None:
    lru = PrefixCache(30)
    lru.visit(_chain(1, 2))
    lru.visit(_chain(3))  # holds 1, 2, 3
    lru.visit(_chain(4))  # evicts the least recent: 2 went in before 1 (a request's end first)
    assert lru.visit(_chain(1)) == 10
    assert lru.visit(_chain(1, 2)) == 10


def test_hits_are_whole_blocks_and_leave_the_last_prompt_token() -> None:
    cache = IdealCache(None, block_size=16)
    cache.visit([("a", 40)], 41)
    assert cache.visit([("a", 40)], 41).infinite == 32
    same = IdealCache(None)
    same.visit([("a", 40)], 40)
    assert same.visit([("a", 40)], 40).infinite == 39


def test_labels() -> None:
    assert Prediction(100, 0, 0).label == "new"
    assert Prediction(100, 80, 80).label == "resident"
    assert Prediction(100, 40, 80).label == "evicted"
    assert Prediction(100, None, 80).label is None
    assert Prediction(100, None, 0).label == "new"


requests = st.lists(
    st.lists(st.tuples(st.integers(0, 12), st.integers(1, 40)), min_size=1, max_size=6),
    min_size=1,
    max_size=40,
)


def _normalized(stream: list[list[tuple[int, int]]]) -> list[Segments]:
    """Equal keys must mean equal tokens: each key keeps the size it first had."""
    sizes: dict[int, int] = {}
    return [[(k, sizes.setdefault(k, n)) for k, n in request] for request in stream]


@settings(max_examples=150, deadline=None)
@given(requests, st.integers(1, 200), st.integers(0, 200))
def test_infinite_bounds_lru_and_lru_grows_with_capacity(
    stream: list[list[tuple[int, int]]], small: int, more: int
) -> None:
    stream_n = _normalized(stream)
    little, big, endless = IdealCache(small), IdealCache(small + more), IdealCache(None)
    for segments in stream_n:
        tokens = sum(n for _, n in segments) + 1
        a, b = little.visit(segments, tokens), big.visit(segments, tokens)
        c = endless.visit(segments, tokens)
        assert a.lru is not None and b.lru is not None
        assert a.lru <= b.lru <= c.infinite
        assert a.infinite == b.infinite == c.infinite


@settings(max_examples=100, deadline=None)
@given(requests)
def test_an_lru_that_holds_everything_is_the_infinite_cache(
    stream: list[list[tuple[int, int]]],
) -> None:
    stream_n = _normalized(stream)
    total = sum(n for segments in stream_n for _, n in set(segments))
    cache = IdealCache(total)
    for segments in stream_n:
        prediction = cache.visit(segments, sum(n for _, n in segments) + 1)
        assert prediction.lru == prediction.infinite


def test_tiling_over_more_than_the_capacity_never_hits_an_lru() -> None:
    """The contexts workload's order: every context revisited after all the others."""
    cache = IdealCache(capacity=100)
    labels = [cache.visit([(c % 11, 10)], 11).label for c in range(44)]
    assert labels[:11] == ["new"] * 11
    assert set(labels[11:]) == {"evicted"}
    fits = IdealCache(capacity=110)
    assert {fits.visit([(c % 11, 10)], 11).label for c in range(11, 44)} >= {"resident"}


def test_predictor_follows_the_plan_order_whatever_order_records_come_in() -> None:
    stream = iter([(i, [(i % 2, 10)], 11) for i in range(6)])
    predictor = Predictor(stream, IdealCache(None))

    def at(index: int) -> Prediction | None:
        return predictor.predict(RequestRecord(index, 0, 0, 0, 0, t0=0.0))

    assert at(3) == Prediction(11, None, 10)
    assert at(0) == Prediction(11, None, 0)
    assert at(2) == Prediction(11, None, 10)
    assert at(2) is None
    assert at(9) is None


def _turn(session: int, turn: int, prompt: int, ok: bool = True) -> RequestRecord:
    return RequestRecord(
        0, session, 0, turn - 1, 0, t0=0.0, prompt_tokens=prompt, completion_tokens=20,
        session=session, turn=turn, error=None if ok else "timeout",
    )  # fmt: skip


def test_a_session_s_turns_reuse_its_history_and_the_shared_system_prompt() -> None:
    """Turn k's prompt: the 100-token system prompt, earlier turns (50 of text, 20 of answer
    each), its own 50 tokens."""
    predictor = SessionPredictor(IdealCache(None), system_tokens=100, turns=3)
    first = predictor.predict(_turn(1, 1, 150))
    assert first is not None and first.infinite == 100, "set-up's probes sent the system prompt"
    other = predictor.predict(_turn(2, 1, 150))
    assert other is not None and other.infinite == 100
    second = predictor.predict(_turn(1, 2, 220))
    assert second is not None and second.infinite == 170
    third = predictor.predict(_turn(1, 3, 290))
    assert third is not None and third.infinite == 240
    assert predictor.predict(_turn(2, 2, 220, ok=False)) is None
    again = predictor.predict(_turn(2, 3, 290))
    assert again is not None and again.infinite == 100, "a failed turn ends the session's history"
    assert predictor.predict(RequestRecord(0, 0, 0, 0, 0, t0=0.0)) is None


def _record(ttft: float, ok: bool = True) -> RequestRecord:
    return RequestRecord(0, 0, 0, 0, 0, t0=0.0, t_first=ttft, error=None if ok else "timeout")


def test_score_and_figures() -> None:
    score = ReuseScore()
    score.add(Prediction(100, 0, 0), _record(0.5))
    score.add(Prediction(100, 90, 90), _record(0.1))
    score.add(Prediction(100, 0, 90), _record(0.4))
    score.add(Prediction(100, 90, 90), _record(0.1, ok=False))
    assert score.lru_rate == 0.3
    assert score.infinite_rate == 0.6
    server = {
        figures.GPU_HIT_TOKENS.key: 60.0,
        figures.EXTERNAL_HIT_TOKENS.key: 30.0,
        figures.GPU_QUERY_TOKENS.key: 300.0,
    }
    found = reuse_figures(score, server, 1000)
    assert found[figures.MEASURED_HIT_RATE.key] == 0.3
    assert found[figures.REUSE_EFFICIENCY.key] == 1.0
    assert found[figures.IDEAL_CACHE_TOKENS.key] == 1000
    assert abs(found[figures.TTFT_EVICTED.key] - 0.4) < 1e-3
    assert abs(found[figures.TTFT_NEW.key] - 0.5) < 1e-3


def test_figures_without_a_capacity_or_server_metrics_leave_out_what_is_unknown() -> None:
    score = ReuseScore()
    score.add(Prediction(100, None, 50), _record(0.2))
    found = reuse_figures(score, None, None)
    assert found == {figures.IDEAL_INFINITE_HIT_RATE.key: 0.5}
    assert measured_hit_rate({}) is None
    assert reuse_efficiency(0.5, 0.0) is None
    assert reuse_efficiency(0.5, 0.25) == 2.0


def test_geometry_from_the_server_or_the_flag() -> None:
    sample = ServerSample(gauges={figures.GPU_CAPACITY_TOKENS.key: 4096.0, KV_BLOCK_SIZE: 128.0})
    assert cache_geometry(sample, None) == (4096, 128)
    assert cache_geometry(sample, 1000) == (1000, 128)
    assert cache_geometry(None, None) == (None, 1)
