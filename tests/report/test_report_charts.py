"""report.charts and report.metrics formatting: units, precision, deterministic inline SVG."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tmesh.report import charts
from tmesh.report.charts import Distribution, Line
from tmesh.results.catalogue.units import format_ratio, format_value


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (1.9451230665047963, "s", "1.95 s"),
        (12.345, "s", "12.3 s"),
        (1234.5, "s", "1,234 s"),
        (0.8336528253555298, "s", "834 ms"),
        (0.0025131286119239667, "s", "2.51 ms"),
        (0.0000412, "s", "0.0412 ms"),
        (46750.16469702823, "tok/s", "46,750 tok/s"),
        (69.70127647184124, "tok/s", "69.7 tok/s"),
        (4.792558019071052, "req/s", "4.79 req/s"),
        (0.25, "req/s", "0.25 req/s"),
        (1234567, "count", "1,234,567"),
        (1.666, "%", "1.7%"),
        (0.0123, "%", "0.012%"),
        (0.0, "%", "0.0%"),
        (None, "s", "—"),
        (float("nan"), "tok/s", "—"),
    ],
)
def test_values_have_three_figures_and_a_unit(value: float | None, unit: str, shown: str) -> None:
    assert format_value(value, unit) == shown


def test_ratios() -> None:
    assert [format_ratio(r) for r in (2.7, 0.3125, 12.34, None)] == ["2.70x", "0.31x", "12.3x", "—"]


def test_line_chart_is_inline_responsive_and_deterministic() -> None:
    lines = [Line("a", [1, 2, 3], [0.1, None, 0.3], "#2563eb", steps=True)]
    first = charts.line_chart("one", lines, "TTFT", "s", warmup=1.0)
    assert first.startswith("<svg") and "<?xml" not in first
    assert re.match(r'<svg[^>]*class="chart" role="img" aria-label="one"', first)
    assert not re.search(r"<svg[^>]* (width|height)=", first)
    assert first == charts.line_chart("one", lines, "TTFT", "s", warmup=1.0)
    other = charts.line_chart("two", lines, "TTFT", "s", warmup=1.0)
    ids = set(re.findall(r'<clipPath id="([^"]+)"', first))
    assert ids and ids.isdisjoint(re.findall(r'<clipPath id="([^"]+)"', other))


def test_cumulative_chart_stays_small_for_long_runs() -> None:
    rng = np.random.default_rng(0)
    many = Distribution("many", rng.lognormal(-2, 0.5, 200_000), "#2563eb")
    few = Distribution("few", rng.lognormal(-2, 0.5, 1_500), "#2563eb")
    assert len(charts.cumulative("many", [many])) < 2 * len(charts.cumulative("few", [few]))


def test_rotation_boxes_group_long_runs_but_keep_the_cold_pass() -> None:
    rotation = np.repeat(np.arange(300), 4)
    ttft = np.where(rotation == 0, 0.9, 0.1)
    svg = charts.rotation_boxes("rot", rotation, rotation.copy(), ttft)
    assert svg.count('id="patch_') < 80
    assert charts._rotation_label(0, 10) == "0"
    assert charts._rotation_label(1, 10) == "1-10"
    assert charts._rotation_label(30, 10) == "291-300"
    assert charts._rotation_label(7, 1) == "7"
