"""Two or more runs side by side: ratios to the first run, their significance, and a verdict.

The use case is comparing deployments of one model, where QPS and mean TTFT matter most.
A ratio alone invites over-reading a 3 % wobble, so each difference is set against the runs' own
interval-to-interval noise: twice the combined standard error of the post-warm-up interval values.
Runs of different workloads measure different things, so they are refused unless forced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from string import ascii_uppercase

import numpy as np

from tmesh.report.load import Run
from tmesh.results.catalogue.metrics import (
    COLD_WARM,
    ERROR_RATE,
    OVERALL,
    QPS,
    RATES,
    TTFT,
    VISITS,
    Metric,
    stat_key,
    visit_key,
)
from tmesh.results.catalogue.units import PERCENT, SECONDS, format_ratio, format_value

WORKLOAD_FIELDS = (
    ("model", "model"),
    ("workload", "workload"),
    ("input_length", "input length"),
    ("output_length", "output length"),
    ("num_contexts", "number of contexts"),
)
SESSION_FIELDS = (
    ("system_prompt", "system prompt"),
    ("turns", "turns"),
    ("turn_input", "turn input"),
    ("think_time", "think time"),
    ("think_time_dist", "think-time distribution"),
    ("users", "users"),
    ("session_rate", "session rate"),
)
"""What makes two sessions runs different workloads (their users, not contexts, and their
system prompt, not an input length)."""
COMPARED = [*RATES, *OVERALL, *COLD_WARM, ERROR_RATE]
"""The metrics a comparison lines up (counts are left out: they scale with run length)."""
SIGNIFICANCE_FACTOR = 2.0


class CompareError(Exception):
    """Runs that cannot be compared; `str()` is one line saying why and what to do."""


@dataclass
class Cell:
    """One run's value of one metric, relative to the first run.

    `significant` is None when the noise cannot be estimated (too few intervals, or a metric with
    no per-interval counterpart); `better` is None for the first run and for equal values.
    """

    value: float | None
    ratio: float | None = None
    significant: bool | None = None
    better: bool | None = None


@dataclass
class Row:
    metric: Metric
    cells: list[Cell]


@dataclass
class Comparison:
    runs: list[Run]
    labels: list[str]
    rows: list[Row]
    verdict: str
    warnings: list[str] = field(default_factory=list)

    def row(self, key: str) -> Row:
        return next(row for row in self.rows if row.metric.key == key)


def compare_runs(
    runs: list[Run], labels: list[str] | None = None, force: bool = False
) -> Comparison:
    """Line up `runs` against the first; raises `CompareError` for mismatched workloads."""
    if len(runs) < 2:
        raise CompareError("compare needs at least two run folders")
    labels = _labels(runs, labels)
    differences = workload_differences(runs, labels)
    if differences and not force:
        raise CompareError(
            f"the runs' workloads differ ({'; '.join(differences)}): their numbers are not "
            "comparable; pass --force to compare anyway"
        )
    warnings = [f"Workloads differ, compared anyway (--force): {'; '.join(differences)}."]
    warnings = warnings if differences else []
    warnings.extend(_duration_warning(runs, labels))
    rows = [Row(metric, cells(runs, metric)) for metric in COMPARED]
    comparison = Comparison(runs, labels, rows, "", warnings)
    comparison.verdict = verdict(comparison)
    return comparison


def _labels(runs: list[Run], labels: list[str] | None) -> list[str]:
    if labels is None:
        return [_letter(index) for index in range(len(runs))]
    if len(labels) != len(runs):
        raise CompareError(f"--labels gives {len(labels)} names for {len(runs)} runs")
    if len(set(labels)) != len(labels) or not all(label.strip() for label in labels):
        raise CompareError("--labels must be distinct, non-empty names")
    return [label.strip() for label in labels]


def _letter(index: int) -> str:
    return ascii_uppercase[index % 26] + ("" if index < 26 else str(index // 26))


def workload_differences(runs: list[Run], labels: list[str]) -> list[str]:
    """What differs between the runs' workloads, e.g. `input length: A 32000, B 16000`."""
    differences = []
    for label, values in _workload_values(runs):
        if len(set(values)) > 1:
            shown = ", ".join(f"{who} {value}" for who, value in zip(labels, values, strict=True))
            differences.append(f"{label}: {shown}")
    return differences


def _workload_values(runs: list[Run]) -> list[tuple[str, list[object]]]:
    """Each field that defines the runs' workload, with every run's value."""
    sessions = [run.spec.sessions for run in runs]
    fields = [
        (label, [getattr(run.spec, name) for run in runs])
        for name, label in WORKLOAD_FIELDS
        if not (any(sessions) and name in ("input_length", "num_contexts"))
    ]
    if any(sessions):
        fields += [
            (label, [getattr(spec, name, None) for spec in sessions])
            for name, label in SESSION_FIELDS
        ]
    return fields


def _duration_warning(runs: list[Run], labels: list[str]) -> list[str]:
    durations = [run.summary.elapsed for run in runs]
    if min(durations) <= 0 or max(durations) / min(durations) < 1.5:
        return []
    shown = ", ".join(
        f"{label} {format_value(d, SECONDS)}" for label, d in zip(labels, durations, strict=True)
    )
    return [
        f"The runs lasted different times ({shown}); compare runs of equal duration: the "
        "share of revisits grows as a run goes on, which moves its means."
    ]


def cells(runs: list[Run], metric: Metric) -> list[Cell]:
    """Each run's value of `metric`, set against the first run's and its noise."""
    reference = runs[0]
    base = metric.value(reference.summary)
    cells = [Cell(base)]
    for run in runs[1:]:
        value = metric.value(run.summary)
        cell = Cell(value)
        if value is not None and base:
            cell.ratio = value / base
            cell.significant = significant(reference, run, metric, base, value)
            if value != base:
                cell.better = (value > base) == metric.higher_is_better
        cells.append(cell)
    return cells


def significant(a: Run, b: Run, metric: Metric, value_a: float, value_b: float) -> bool | None:
    """Whether |b - a| exceeds twice the combined standard error of the runs' interval values."""
    return beyond_noise(value_a, value_b, standard_error(a, metric), standard_error(b, metric))


def beyond_noise(
    value_a: float, value_b: float, noise_a: float | None, noise_b: float | None
) -> bool | None:
    """Whether two runs' values differ by more than twice their combined standard error (None
    when either's noise is unknown)."""
    if noise_a is None or noise_b is None:
        return None
    return abs(value_b - value_a) > SIGNIFICANCE_FACTOR * math.hypot(noise_a, noise_b)


def standard_error(run: Run, metric: Metric) -> float | None:
    """Standard error of the metric's per-interval values after the warm-up (None below two).

    Intervals shorter than half the usual one (the last, cut by the stop) are left out: their
    rates are noisier and would inflate the estimate.
    """
    if metric.per_interval is None:
        return None
    snaps = [
        s for s in run.intervals if s.elapsed - s.interval_seconds >= run.summary.warmup_seconds
    ]
    if not snaps:
        return None
    usual = float(np.median([s.interval_seconds for s in snaps]))
    values = [metric.per_interval(s) for s in snaps if s.interval_seconds >= usual / 2]
    defined = np.array([v for v in values if v is not None], dtype=float)
    if len(defined) < 2:
        return None
    return float(np.std(defined, ddof=1) / math.sqrt(len(defined)))


def verdict(comparison: Comparison) -> str:
    """One plain-language paragraph: how each run fared against the first on the two headline
    numbers (QPS, mean TTFT), what revisits show about caching, and what to be careful about."""
    labels = comparison.labels
    qps, ttft = comparison.row(QPS.key), comparison.row(stat_key(TTFT, "mean"))
    warm = comparison.row(visit_key(VISITS[1], "mean"))
    sentences = []
    for index in range(1, len(comparison.runs)):
        sentences.append(_headline(labels[0], labels[index], qps.cells[index], ttft.cells[index]))
        revisit = warm.cells[index]
        if revisit.ratio is not None and revisit.significant is not False:
            sentences.append(
                f"On revisits of a context, where a KV cache pays off, {labels[index]}'s mean "
                f"TTFT was {format_ratio(revisit.ratio)} {labels[0]}'s."
            )
    unknown = any(
        cell.significant is None and cell.ratio is not None
        for row in (qps, ttft)
        for cell in row.cells[1:]
    )
    if unknown:
        sentences.append(
            "Some runs have too few post-warm-up intervals to tell a real difference from noise; "
            "longer runs would settle it."
        )
    sentences.extend(_error_sentences(comparison))
    sentences.extend(comparison.warnings)
    return " ".join(sentences)


def _headline(first: str, other: str, qps: Cell, ttft: Cell) -> str:
    if qps.ratio is None or ttft.ratio is None:
        return (
            f"{other} and {first} cannot be compared on QPS and mean TTFT: one of them has no "
            "successful request."
        )
    served = (
        f"{other} served {format_ratio(qps.ratio)} the QPS of {first}"
        if qps.significant is not False
        else f"{other} served the same QPS as {first} within noise ({format_ratio(qps.ratio)})"
    )
    at = (
        f"at {format_ratio(ttft.ratio)} {first}'s mean TTFT"
        if ttft.significant is not False
        else f"at a mean TTFT equal within noise ({format_ratio(ttft.ratio)})"
    )
    return f"{served} {at}{_judgement(other, qps, ttft)}."


def _judgement(other: str, qps: Cell, ttft: Cell) -> str:
    """How the two headline numbers add up, counting only differences above the noise."""
    moves = [cell.better for cell in (qps, ttft) if cell.significant and cell.better is not None]
    if len(moves) == 2 and all(moves):
        return f": {other} is better on both numbers that matter most"
    if len(moves) == 2 and not any(moves):
        return f": {other} is worse on both numbers that matter most"
    if len(moves) == 2:
        return ": a trade-off between throughput and latency"
    if not moves and qps.significant is False and ttft.significant is False:
        return ": no difference beyond the runs' own interval-to-interval noise"
    return ""


def _error_sentences(comparison: Comparison) -> list[str]:
    row = comparison.row(ERROR_RATE.key)
    failing = [
        f"{label} {format_value(cell.value, PERCENT)}"
        for label, cell in zip(comparison.labels, row.cells, strict=True)
        if cell.value and cell.value >= 1.0
    ]
    if not failing:
        return []
    return [f"Mind the failed requests ({', '.join(failing)}): failures do not count in QPS."]
