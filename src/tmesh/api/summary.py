"""A run's summary as typed figures: each value with the metric catalogue's key, label and unit.

`summary.json` holds bare numbers whose meaning lives in the catalogue; a notebook wants both at
once (`result.summary.ttft.p50.value`, `.unit`). The headline metrics are typed fields; every
metric of the catalogue, the workloads' own included, is reachable by key (`summary["ttft.p50"]`
or `summary["ttft_p50"]`), and `record` is `summary.json` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tmesh.results.catalogue.metrics import (
    ALL,
    DECODE_THROUGHPUT,
    E2E,
    ERROR_RATE,
    FAILED_REQUESTS,
    HEADLINE,
    INPUT_TOKEN_THROUGHPUT,
    ITL,
    OUTPUT_TOKEN_THROUGHPUT,
    PREFILL_THROUGHPUT,
    QPS,
    ROTATIONS,
    STATS,
    TOTAL_REQUESTS,
    TTFT,
    VISITS,
    Metric,
    Quantity,
    Visit,
    stat_key,
    visit_key,
)
from tmesh.results.catalogue.names import metric_named
from tmesh.results.catalogue.outcomes import stop_reason_words
from tmesh.results.catalogue.units import console_value
from tmesh.results.records import RunSummary


@dataclass(frozen=True)
class Figure:
    """One number of a run and what it means; `value` is None where the run has none (no
    successful request, no revisit yet)."""

    key: str
    label: str
    unit: str
    value: float | None
    higher_is_better: bool
    definition: str

    def __str__(self) -> str:
        return f"{self.label}: {console_value(self.value, self.unit)}"


@dataclass(frozen=True)
class Distribution:
    """Mean and percentiles of a per-request quantity over the run (`ttft.mean`, `ttft.p50`…)."""

    mean: Figure
    p50: Figure
    p90: Figure
    p99: Figure


@dataclass(frozen=True)
class Summary:
    """What a run measured: the headline figures, typed, over `record` (`summary.json`)."""

    qps: Figure
    input_token_throughput: Figure
    output_token_throughput: Figure
    ttft: Distribution
    itl: Distribution
    e2e: Distribution
    prefill_throughput: Distribution
    decode_throughput: Distribution
    cold_ttft: Distribution
    """TTFT of first visits of a context, before any of its prefix can be cached."""
    warm_ttft: Distribution
    """TTFT of revisits, whose prefix a KV cache may hold."""
    total_requests: Figure
    failed_requests: Figure
    error_rate: Figure
    rotations: Figure
    elapsed: float
    """Seconds the run lasted."""
    stop_reason: str
    verdict: str | None
    record: RunSummary = field(repr=False)
    figures: dict[str, Figure] = field(repr=False)
    """Every metric of the catalogue by key, `steady.*` (after the warm-up) included."""

    def __getitem__(self, name: str) -> Figure:
        """A figure by catalogue key (`ttft.p50`) or column name (`ttft_p50`)."""
        return self.figures[metric_named(name).key]

    def __str__(self) -> str:
        lines = [
            f"{self.total_requests.value or 0:.0f} requests in {self.elapsed:.1f} s "
            f"({stop_reason_words(self.stop_reason)})",
            *(str(self.figures[m.key]) for m in HEADLINE if m.key.endswith(("qps", ".mean"))),
        ]
        if self.verdict:
            lines.append(f"Verdict: {self.verdict}")
        return "\n".join(lines)


def figure(metric: Metric, record: RunSummary) -> Figure:
    return Figure(
        metric.key,
        metric.label,
        metric.unit,
        metric.value(record),
        metric.higher_is_better,
        metric.definition,
    )


def _distribution(figures: dict[str, Figure], key: Callable[[str], str]) -> Distribution:
    """The four statistics of one quantity, `key(stat)` naming each in the catalogue."""
    mean, p50, p90, p99 = (figures[key(stat)] for stat in STATS)
    return Distribution(mean, p50, p90, p99)


def summary_of(record: RunSummary) -> Summary:
    """The typed summary of a `summary.json` record."""
    figures = {metric.key: figure(metric, record) for metric in ALL}

    def of(q: Quantity) -> Distribution:
        return _distribution(figures, lambda stat: stat_key(q, stat))

    def by_visit(visit: Visit) -> Distribution:
        return _distribution(figures, lambda stat: visit_key(visit, stat))

    cold, warm = map(by_visit, VISITS)
    return Summary(
        qps=figures[QPS.key],
        input_token_throughput=figures[INPUT_TOKEN_THROUGHPUT.key],
        output_token_throughput=figures[OUTPUT_TOKEN_THROUGHPUT.key],
        ttft=of(TTFT),
        itl=of(ITL),
        e2e=of(E2E),
        prefill_throughput=of(PREFILL_THROUGHPUT),
        decode_throughput=of(DECODE_THROUGHPUT),
        cold_ttft=cold,
        warm_ttft=warm,
        total_requests=figures[TOTAL_REQUESTS.key],
        failed_requests=figures[FAILED_REQUESTS.key],
        error_rate=figures[ERROR_RATE.key],
        rotations=figures[ROTATIONS.key],
        elapsed=record.elapsed,
        stop_reason=record.stop_reason,
        verdict=record.verdict,
        record=record,
        figures=figures,
    )
