"""Series at bounded memory and the bars drawn from them."""

from __future__ import annotations

from tmesh.bench.output.trend import BARS, GAP, Series, chart, columns, sparkline


def test_series_keeps_every_point_until_full() -> None:
    series = Series(capacity=8)
    for value in (1.0, None, 3.0):
        series.add(value)
    assert series.values() == [1.0, None, 3.0]
    assert series.span == 1


def test_a_full_series_halves_its_resolution_and_keeps_the_whole_run() -> None:
    series = Series(capacity=8)
    for value in range(10_000):
        series.add(float(value))
    points = series.values()
    assert len(points) <= 8
    assert series.span == 2048
    # The first point still describes the start of the run, the last one its end.
    assert points[0] == sum(range(2048)) / 2048
    assert points[-1] is not None and points[-1] > 9000


def test_merging_keeps_gaps_only_where_every_value_was_missing() -> None:
    series = Series(capacity=4)
    for value in (None, None, 2.0, None):
        series.add(value)
    assert series.values() == [None, 2.0]


def test_columns_average_what_they_cover() -> None:
    assert columns([1.0, 3.0, None, None, 5.0, 7.0], 3) == [2.0, None, 6.0]
    assert columns([1.0, 2.0], 5) == [1.0, 2.0]
    assert columns([1.0], 0) == []


def test_sparkline_starts_at_zero_and_leaves_gaps_blank() -> None:
    line = sparkline([0.0, 4.0, None, 8.0], 10)
    assert line == BARS[0] + BARS[3] + GAP + BARS[-1]
    assert sparkline([7.0, 8.0], 10) == BARS[6] + BARS[7], "a small drop is not drawn as a fall"
    assert sparkline([0.5], 5, ceiling=1.0) == BARS[3]


def test_taller_charts_stack_eight_levels_per_row() -> None:
    top, bottom = chart([1.0, 2.0, 3.0, 4.0], 10, rows=2)
    assert bottom == BARS[3] + BARS[7] + BARS[7] + BARS[7]
    assert top == GAP + GAP + BARS[3] + BARS[7]
    assert chart([0.0, None], 10, rows=3) == [GAP * 2, GAP * 2, BARS[0] + GAP]
