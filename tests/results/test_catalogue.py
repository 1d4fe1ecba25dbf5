"""The metric catalogue: stable keys, every server figure declared once, and both value styles."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import SEED_SPEC

from tmesh.bench.measure.prometheus import parse_server_metrics
from tmesh.bench.measure.servermetrics import interval_view, run_view
from tmesh.bench.measure.verdict import summarize_cache
from tmesh.results.catalogue.metrics import ALL, BY_KEY, QUANTITIES, STATS
from tmesh.results.catalogue.outcomes import ERROR_KIND_MEANINGS, STOP_REASON_WORDS
from tmesh.results.catalogue.server import LINES, SERVER, SERVER_BY_KEY, SERVER_METRICS, TMESH
from tmesh.results.catalogue.units import (
    BYTES,
    COUNT,
    FRACTION,
    PERCENT,
    RATIO,
    REQUESTS_PER_S,
    SECONDS,
    TOKENS,
    TOKENS_PER_S,
    console_value,
    console_values,
    format_value,
)
from tmesh.results.records import ERROR_KINDS, STOP_REASONS, MetricStats, RunSummary, WindowStats

METRICS = Path(__file__).parents[1] / "fixtures" / "metrics"
DISTRIBUTED = ("ttft", "itl", "e2e", "prefill_throughput", "decode_throughput")
SCHEDULED = ("lateness", "ttft_from_intended", "e2e_from_intended")


def test_metric_keys_are_the_stable_summary_paths() -> None:
    """These keys are CSV/JSON export keys and HTML `data-key`s: renaming one breaks users."""
    expected = {
        "qps", "input_token_throughput", "output_token_throughput",
        "steady_qps", "steady_input_token_throughput", "steady_output_token_throughput",
        "total_requests", "failed_requests", "error_rate", "rotations",
        *(f"{p}{n}.{s}" for p in ("", "steady.") for n in DISTRIBUTED for s in STATS),
        *(f"{v}_ttft.{s}" for v in ("cold", "warm") for s in STATS),
        "request_rate", "cap_hits",
        *(f"{n}.{s}" for n in SCHEDULED for s in STATS),
        "goodput", "goodput_share",
        "sessions_started", "sessions_completed", "sessions_abandoned", "mean_turns",
        *(f"session_duration.{s}" for s in STATS),
    }  # fmt: skip
    assert [metric.key for metric in ALL] == list(BY_KEY)
    assert set(BY_KEY) == expected
    assert [q.key for q in QUANTITIES] == list(DISTRIBUTED)


def test_every_metric_has_a_definition() -> None:
    assert all(metric.definition and metric.label for metric in ALL)
    assert all(q.definition for q in QUANTITIES)


def _summary() -> RunSummary:
    stats = MetricStats(count=40, mean=1.0, p50=1.0)
    return RunSummary(
        "now", 60.0, "duration", 100, 0, 1.6, 1.0, 1.0, WindowStats(), WindowStats(), 0.0,
        MetricStats(count=10, mean=4.0, p50=4.0), stats, 3,
    )  # fmt: skip


@pytest.mark.parametrize("fixture", sorted(p.name for p in METRICS.glob("*.txt")))
def test_every_server_key_produced_is_declared(fixture: str) -> None:
    """What the scrape and the verdict put in `server` is named and explained by the catalogue,
    so the console and the report never have to show a raw key."""
    sample = parse_server_metrics((METRICS / fixture).read_text())
    produced = set(interval_view(None, sample)) | set(run_view(sample, sample))
    summary = _summary()
    summarize_cache(summary, SEED_SPEC, None, sample, sample)
    produced |= set(summary.server or {})
    assert produced
    assert produced <= set(SERVER_BY_KEY)


def test_each_server_figure_is_on_exactly_one_line_of_one_source() -> None:
    members = [metric for line in LINES for metric, _ in line.members]
    assert sorted(m.key for m in members) == sorted(m.key for m in SERVER_METRICS)
    for line in LINES:
        assert {metric.source for metric, _ in line.members} == {line.source}
        assert line.meaning
    sources = [line.source for line in LINES]
    assert sources == sorted(sources, key=[SERVER, TMESH].index)


@pytest.mark.parametrize(
    ("value", "unit", "console", "report"),
    [
        (1.1941296603228595, SECONDS, "1.194 s", "1.19 s"),
        (0.003481437, SECONDS, "0.003481 s", "3.48 ms"),
        (0.0, SECONDS, "0.000 s", "0.00 ms"),
        (81783.8627181991, TOKENS_PER_S, "81783.9 tokens/s", "81,784 tok/s"),
        (7.393701354429838, REQUESTS_PER_S, "7.394", "7.39 req/s"),
        (74, COUNT, "74", "74"),
        (1_600_000.0, TOKENS, "1600000", "1,600,000"),
        (0.125, FRACTION, "12.5%", "12.5%"),
        (1.5, FRACTION, "1.5", "150.0%"),
        (3 * 1024**3, BYTES, "3.0 GiB", "3.00 GiB"),
        (512.0, BYTES, "512 B", "512 B"),
        (11.84, RATIO, "11.8x", "11.8x"),
        (2.5, PERCENT, "2.5%", "2.5%"),
        (None, SECONDS, "n/a", "—"),
        (float("nan"), TOKENS_PER_S, "n/a", "—"),
        (float("inf"), FRACTION, "n/a", "—"),
    ],
)
def test_both_styles_follow_the_unit(
    value: float | None, unit: str, console: str, report: str
) -> None:
    assert console_value(value, unit) == console
    assert format_value(value, unit) == report


def test_console_values_share_one_unit() -> None:
    assert console_values((1.8, 2.5, 2.9), SECONDS) == "1.800 / 2.500 / 2.900 s"
    assert console_values((None, None), SECONDS) == "n/a"


def test_every_stop_reason_and_error_kind_has_words() -> None:
    assert set(STOP_REASON_WORDS) == set(STOP_REASONS)
    assert set(ERROR_KIND_MEANINGS) == set(ERROR_KINDS)
    assert all(STOP_REASON_WORDS.values()) and all(ERROR_KIND_MEANINGS.values())
