"""Distribution: exact aggregates, percentiles within histogram precision, exact merge, encoding."""

from __future__ import annotations

import random
import statistics

import pytest

from tmesh.bench.measure.stats import LATENCY_HIGHEST, Distribution
from tmesh.results.records import MetricStats


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


def close_enough(got: float | None, want: float, dist: Distribution) -> bool:
    assert got is not None
    return abs(got - want) <= want * 1e-3 + 1 / dist.scale


def latencies(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(-1.0, 1.2) for _ in range(n)]


def throughputs(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(5.0, 200_000.0) for _ in range(n)]


def filled(dist: Distribution, values: list[float]) -> Distribution:
    for v in values:
        dist.add(v)
    return dist


@pytest.mark.parametrize(
    ("make", "values"),
    [
        (Distribution.latency, latencies(1, 20_000)),
        (Distribution.throughput, throughputs(2, 20_000)),
        (Distribution.latency, latencies(3, 7)),
    ],
)
def test_aggregates_match_reference(make, values: list[float]) -> None:
    dist = filled(make(), values)
    stats = dist.to_stats()
    assert stats.count == len(values)
    assert stats.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert stats.min == min(values)
    assert stats.max == max(values)
    for p, got in ((50, stats.p50), (90, stats.p90), (99, stats.p99)):
        assert close_enough(got, nearest_rank(values, p), dist), (p, got)


def test_single_value_percentiles_are_that_value() -> None:
    stats = filled(Distribution.latency(), [1.2345678]).to_stats()
    assert stats.p50 == stats.p90 == stats.p99 == stats.min == stats.max == 1.2345678


def test_nearest_rank_on_small_sample() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    dist = filled(Distribution.latency(), values)
    p50, p90, p99 = dist.percentiles((50.0, 90.0, 99.0))
    assert close_enough(p50, 8.0, dist)
    assert close_enough(p90, 15.0, dist)
    assert close_enough(p99, 16.0, dist)


def test_empty_distribution() -> None:
    assert Distribution.latency().to_stats() == MetricStats()


def test_zero_and_out_of_range_values_are_recorded_not_rejected() -> None:
    dist = filled(Distribution.latency(), [0.0, 0.0, LATENCY_HIGHEST * 10])
    stats = dist.to_stats()
    assert stats.count == 3
    assert stats.min == 0.0
    assert stats.max == LATENCY_HIGHEST * 10
    assert stats.mean == pytest.approx(LATENCY_HIGHEST * 10 / 3)
    assert stats.p50 == 0.0


def test_merge_equals_recording_everything_in_one() -> None:
    values = latencies(4, 5_000)
    whole = filled(Distribution.latency(), values)
    left = filled(Distribution.latency(), values[:1234])
    right = filled(Distribution.latency(), values[1234:])
    left.merge(right)
    merged, single = left.to_stats(), whole.to_stats()
    assert merged.mean == pytest.approx(single.mean, rel=1e-12)
    assert (merged.count, merged.min, merged.max) == (single.count, single.min, single.max)
    assert (merged.p50, merged.p90, merged.p99) == (single.p50, single.p90, single.p99)


def test_merge_with_empty_sides() -> None:
    values = latencies(5, 100)
    full = filled(Distribution.latency(), values)
    full.merge(Distribution.latency())
    empty = Distribution.latency()
    empty.merge(full)
    assert empty.to_stats() == full.to_stats()


def test_merge_refuses_other_units() -> None:
    with pytest.raises(ValueError, match="different units"):
        Distribution.latency().merge(Distribution.throughput())


def test_encode_decode_round_trip() -> None:
    dist = filled(Distribution.throughput(), throughputs(6, 3_000))
    text = dist.encode()
    assert "\n" not in text and text.isascii()
    assert len(text) < 20_000
    back = Distribution.decode(text)
    assert back.to_stats() == dist.to_stats()
    assert back.total == dist.total


def test_decoded_distributions_merge_like_originals() -> None:
    a, b = latencies(7, 800), latencies(8, 900)
    shipped = Distribution.decode(filled(Distribution.latency(), a).encode())
    shipped.merge(Distribution.decode(filled(Distribution.latency(), b).encode()))
    got, want = shipped.to_stats(), filled(Distribution.latency(), a + b).to_stats()
    assert got.mean == pytest.approx(want.mean, rel=1e-12)
    got.mean = want.mean
    assert got == want


def test_empty_round_trip() -> None:
    assert Distribution.decode(Distribution.latency().encode()).to_stats() == MetricStats()


def test_coarse_distributions_keep_their_figures_when_shipped() -> None:
    """A breakdown's two-figure histogram comes back as one, so it merges with its own kind."""
    values = latencies(10, 300)
    back = Distribution.decode(filled(Distribution.coarse_latency(), values).encode())
    assert back.figures == 2
    empty = Distribution.decode(Distribution.coarse_latency().encode())
    empty.merge(back)
    assert empty.to_stats() == filled(Distribution.coarse_latency(), values).to_stats()


def test_the_first_encoding_still_decodes() -> None:
    """Text shipped before the figures were part of it: three figures, as then."""
    dist = filled(Distribution.latency(), latencies(11, 200))
    _, scale, highest, _figures, *rest = dist.encode().split(" ")
    back = Distribution.decode(" ".join(["d1", scale, highest, *rest]))
    assert back.to_stats() == dist.to_stats()


def test_decode_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an encoded"):
        Distribution.decode("hello world")


def test_reset_empties_and_allows_reuse() -> None:
    dist = filled(Distribution.latency(), latencies(9, 500))
    dist.reset()
    assert dist.to_stats() == MetricStats()
    values = latencies(10, 300)
    filled(dist, values)
    assert dist.to_stats() == filled(Distribution.latency(), values).to_stats()
