"""tmesh's own measurements of a run: each declared once, with its definition and direction.

One catalogue drives the console, the report's tables (HTML, Markdown, CSV, JSON), the comparison
and the exporter's help text, so a number means the same thing wherever it appears and is always
read from the same field of `summary.json`. A metric's `key` is stable: it is the CSV/JSON export
key and the HTML `data-key`.

The definitions use the request's timestamps (`TIMESTAMPS`) and the token counts of its usage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tmesh.results.catalogue.units import (
    COUNT,
    PERCENT,
    REQUESTS_PER_S,
    SECONDS,
    TOKENS_PER_S,
    TURNS,
)
from tmesh.results.records import (
    IntervalSnapshot,
    MetricStats,
    RunSummary,
    SessionStats,
    WindowStats,
)

TIMESTAMPS = (
    "seconds on the client's monotonic clock: t0 when a request is sent, t_first and t_last at "
    "the first and last streamed events carrying generated text, t_end at the end of the stream"
)
Reader = Callable[[RunSummary], float | None]
IntervalReader = Callable[[IntervalSnapshot], float | None]
SummaryStats = Callable[[RunSummary], MetricStats]
IntervalStats = Callable[[IntervalSnapshot], MetricStats]


@dataclass(frozen=True)
class Quantity:
    """A per-request measurement, summarised over a window by its mean and percentiles.

    `label` names it in the report; `short` in the console, whose 5-second block capitalises
    each word of it (`Global Average Prefill Throughput`, see `title_case`).
    """

    key: str
    label: str
    short: str
    unit: str
    higher_is_better: bool
    definition: str
    of: Callable[[WindowStats], MetricStats]


TTFT = Quantity(
    "ttft", "TTFT", "TTFT", SECONDS, False,
    "time to first token: t_first - t0, from sending a request to its first generated token, "
    "in seconds",
    lambda w: w.ttft,
)  # fmt: skip
ITL = Quantity(
    "itl", "ITL", "ITL", SECONDS, False,
    "inter-token latency: (t_last - t_first) / (completion_tokens - 1), per request, in seconds",
    lambda w: w.itl,
)  # fmt: skip
E2E = Quantity(
    "e2e", "E2E latency", "E2E", SECONDS, False,
    "end-to-end latency: t_end - t0, from sending a request to the end of its stream, in seconds",
    lambda w: w.e2e,
)  # fmt: skip
PREFILL_THROUGHPUT = Quantity(
    "prefill_throughput", "Prefill throughput", "Prefill throughput", TOKENS_PER_S, True,
    "prompt_tokens / TTFT, per request, in tokens per second",
    lambda w: w.prefill_throughput,
)  # fmt: skip
DECODE_THROUGHPUT = Quantity(
    "decode_throughput", "Decode throughput", "Decode throughput", TOKENS_PER_S, True,
    "(completion_tokens - 1) / (t_last - t_first), per request, in tokens per second",
    lambda w: w.decode_throughput,
)  # fmt: skip
QUANTITIES = (TTFT, ITL, E2E, PREFILL_THROUGHPUT, DECODE_THROUGHPUT)
LATENESS = Quantity(
    "lateness", "Client lateness", "Lateness", SECONDS, False,
    "t0 - t_intended: how late the client sent a request that had a scheduled send time (open "
    "loop, sessions), in seconds; the in-flight cap or a saturated client makes it grow",
    lambda w: w.lateness,
)  # fmt: skip
TTFT_FROM_INTENDED = Quantity(
    "ttft_from_intended", "TTFT from intended send", "TTFT from intended send", SECONDS, False,
    "t_first - t_intended: time to first token counted from when the request was due, as its "
    "user waited for it, in seconds",
    lambda w: w.ttft_from_intended,
)  # fmt: skip
E2E_FROM_INTENDED = Quantity(
    "e2e_from_intended", "E2E from intended send", "E2E from intended send", SECONDS, False,
    "t_end - t_intended: end-to-end latency counted from when the request was due, in seconds",
    lambda w: w.e2e_from_intended,
)  # fmt: skip
SCHEDULED = (LATENESS, TTFT_FROM_INTENDED, E2E_FROM_INTENDED)
"""The quantities of requests sent on a schedule (open loop, sessions)."""
STATS = ("mean", "p50", "p90", "p99")
_STAT_READERS: dict[str, Callable[[MetricStats], float | None]] = {
    "mean": lambda m: m.mean,
    "p50": lambda m: m.p50,
    "p90": lambda m: m.p90,
    "p99": lambda m: m.p99,
}


def title_case(label: str) -> str:
    """`Prefill throughput` -> `Prefill Throughput`: how the 5-second block writes names."""
    return " ".join(word[:1].upper() + word[1:] for word in label.split(" "))


@dataclass(frozen=True)
class Metric:
    """One number of a run: `value` reads it from the summary; `per_interval` from one 5-second
    interval (None when the number has no per-interval counterpart), to estimate its noise.

    `console_label` is the console summary's name for it where that differs from `label`.
    """

    key: str
    label: str
    unit: str
    higher_is_better: bool
    value: Reader
    per_interval: IntervalReader | None = None
    definition: str = ""
    console_label: str = ""

    @property
    def console(self) -> str:
        return self.console_label or self.label


@dataclass(frozen=True)
class Visit:
    """First visits of a context against revisits: the split this workload exists to show."""

    key: str
    label: str
    meaning: str
    ttft: SummaryStats
    interval_ttft: IntervalStats


VISITS = (
    Visit(
        "cold", "first visit", "a context's first request, before any of its prefix can be cached",
        lambda s: s.cold_ttft, lambda snap: snap.interval_cold_ttft,
    ),
    Visit(
        "warm", "revisit", "a later request for a context, whose prefix may be cached",
        lambda s: s.warm_ttft, lambda snap: snap.interval_warm_ttft,
    ),
)  # fmt: skip


def stat_of(stats: MetricStats, stat: str) -> float | None:
    """`stats.mean`, `stats.p50`, ... by the name the catalogue's keys use."""
    return _STAT_READERS[stat](stats)


def stat_key(q: Quantity, stat: str, prefix: str = "") -> str:
    """`ttft.p99`, `steady.itl.mean`: the key of one statistic of a quantity over a window."""
    return f"{prefix}{q.key}.{stat}"


def visit_key(visit: Visit, stat: str) -> str:
    """`cold_ttft.p50`, `warm_ttft.mean`: the key of one statistic of TTFT by visit."""
    return f"{visit.key}_{TTFT.key}.{stat}"


def _summary_stat(stats: SummaryStats, stat: str) -> Reader:
    return lambda summary: stat_of(stats(summary), stat)


def _interval_stat(stats: IntervalStats, stat: str) -> IntervalReader:
    return lambda snap: stat_of(stats(snap), stat)


def _window_stats(window: Callable[[RunSummary], WindowStats], q: Quantity) -> SummaryStats:
    return lambda summary: q.of(window(summary))


def _interval_stats(q: Quantity) -> IntervalStats:
    return lambda snap: q.of(snap.interval_stats)


def _interval_rate(amount: Callable[[WindowStats], float]) -> IntervalReader:
    def rate(snap: IntervalSnapshot) -> float | None:
        if snap.interval_seconds <= 0:
            return None
        return amount(snap.interval_stats) / snap.interval_seconds

    return rate


def _error_rate(summary: RunSummary) -> float | None:
    """Failed share of all requests sent, in percent (`total_requests` counts successes only)."""
    sent = summary.total_requests + summary.failed_requests
    return 100.0 * summary.failed_requests / sent if sent else None


def distribution_metrics(
    window: Callable[[RunSummary], WindowStats],
    prefix: str,
    per_interval: bool,
    quantities: tuple[Quantity, ...] = QUANTITIES,
) -> list[Metric]:
    """Mean and percentiles of `quantities` (TTFT, ITL, E2E and both throughputs) over one
    window."""
    return [
        Metric(
            stat_key(q, stat, prefix),
            f"{q.label} {stat}",
            q.unit,
            q.higher_is_better,
            _summary_stat(_window_stats(window, q), stat),
            _interval_stat(_interval_stats(q), stat) if per_interval else None,
            q.definition,
        )
        for q in quantities
        for stat in STATS
    ]


QPS = Metric(
    "qps", "QPS", REQUESTS_PER_S, True, lambda s: s.qps, _interval_rate(lambda w: w.requests),
    "queries per second: successful requests / elapsed seconds",
)  # fmt: skip
INPUT_TOKEN_THROUGHPUT = Metric(
    "input_token_throughput", "Input tokens", TOKENS_PER_S, True,
    lambda s: s.input_token_throughput, _interval_rate(lambda w: w.prompt_tokens),
    "prompt tokens of successful requests / elapsed seconds", "Input token throughput",
)  # fmt: skip
OUTPUT_TOKEN_THROUGHPUT = Metric(
    "output_token_throughput", "Output tokens", TOKENS_PER_S, True,
    lambda s: s.output_token_throughput, _interval_rate(lambda w: w.completion_tokens),
    "completion tokens of successful requests / elapsed seconds", "Output token throughput",
)  # fmt: skip
RATES = [QPS, INPUT_TOKEN_THROUGHPUT, OUTPUT_TOKEN_THROUGHPUT]
_AFTER_WARMUP = " (requests finished after the warm-up / seconds after it)"
STEADY_RATES = [
    Metric(
        "steady_qps", QPS.label, QPS.unit, True, lambda s: s.steady_qps,
        definition=QPS.definition + _AFTER_WARMUP,
    ),
    Metric(
        "steady_input_token_throughput", INPUT_TOKEN_THROUGHPUT.label, TOKENS_PER_S, True,
        lambda s: s.steady_input_token_throughput,
        definition=INPUT_TOKEN_THROUGHPUT.definition + _AFTER_WARMUP,
    ),
    Metric(
        "steady_output_token_throughput", OUTPUT_TOKEN_THROUGHPUT.label, TOKENS_PER_S, True,
        lambda s: s.steady_output_token_throughput,
        definition=OUTPUT_TOKEN_THROUGHPUT.definition + _AFTER_WARMUP,
    ),
]  # fmt: skip
"""The rates after the warm-up, shown beside `RATES` (same labels, another column)."""
TOTAL_REQUESTS = Metric(
    "total_requests", "Successful requests", COUNT, True, lambda s: s.total_requests,
    definition="requests that finished without error", console_label="Requests processed",
)  # fmt: skip
FAILED_REQUESTS = Metric(
    "failed_requests", "Failed requests", COUNT, False, lambda s: s.failed_requests,
    definition="requests that ended in an error of any kind",
)  # fmt: skip
ERROR_RATE = Metric(
    "error_rate", "Error rate", PERCENT, False, _error_rate,
    definition="failed requests / all requests sent, in percent",
)  # fmt: skip
ROTATIONS = Metric(
    "rotations", "Context rotations", COUNT, True, lambda s: s.rotations,
    definition="completed passes over all contexts", console_label="Context rotations completed",
)  # fmt: skip
COUNTS = [TOTAL_REQUESTS, FAILED_REQUESTS, ERROR_RATE, ROTATIONS]
OVERALL = distribution_metrics(lambda s: s.overall, "", per_interval=True)
STEADY = [*STEADY_RATES, *distribution_metrics(lambda s: s.steady, "steady.", per_interval=False)]
COLD_WARM = [
    Metric(
        visit_key(visit, stat),
        f"{TTFT.label} {visit.label} {stat}",
        SECONDS,
        False,
        _summary_stat(visit.ttft, stat),
        _interval_stat(visit.interval_ttft, stat),
        f"{TTFT.label} of {visit.label}s ({visit.meaning})",
    )
    for visit in VISITS
    for stat in STATS
]
HEADLINE = [*RATES, *OVERALL, *COLD_WARM, *COUNTS]
"""The metrics of one run's headline, in display order."""


def good_share(window: WindowStats) -> float | None:
    """Requests that met the SLO / requests sent (successful or not), from 0 to 1."""
    sent = window.requests + sum(window.errors.values())
    return window.good_requests / sent if sent else None


def _percent(share: float | None) -> float | None:
    return None if share is None else 100.0 * share


def _goodput_share(summary: RunSummary) -> float | None:
    return _percent(good_share(summary.overall)) if summary.slo else None


def _goodput(summary: RunSummary) -> float | None:
    if not summary.slo or summary.elapsed <= 0:
        return None
    return summary.overall.good_requests / summary.elapsed


def _interval_goodput_share(snap: IntervalSnapshot) -> float | None:
    return _percent(good_share(snap.interval_stats))


GOODPUT = Metric(
    "goodput", "Goodput", REQUESTS_PER_S, True, _goodput,
    _interval_rate(lambda w: w.good_requests),
    "requests that succeeded and met every limit of --slo / elapsed seconds (TTFT and E2E "
    "counted from the intended send time when a request had one)",
)  # fmt: skip
GOODPUT_SHARE = Metric(
    "goodput_share", "Goodput share", PERCENT, True, _goodput_share, _interval_goodput_share,
    "requests that succeeded and met every limit of --slo / all requests sent, in percent",
)  # fmt: skip
GOODPUT_METRICS = [GOODPUT, GOODPUT_SHARE]
"""Goodput, defined when the run had an SLO (`summary.slo`)."""
REQUEST_RATE = Metric(
    "request_rate", "Send rate", REQUESTS_PER_S, True, lambda s: s.request_rate,
    definition="requests sent, whatever their outcome, / seconds from the start to the last send: "
    "the load offered, against the --request-rate asked for",
)  # fmt: skip
CAP_HITS = Metric(
    "cap_hits", "In-flight cap hits", COUNT, False, lambda s: s.cap_hits,
    definition="scheduled requests that had to wait for a free in-flight slot (--max-inflight), "
    "and so went out late",
)  # fmt: skip
SCHEDULE = [
    REQUEST_RATE, CAP_HITS,
    *distribution_metrics(lambda s: s.overall, "", per_interval=True, quantities=SCHEDULED),
]  # fmt: skip
"""How well the client kept a schedule (open loop, sessions)."""


def _sessions_count(read: Callable[[SessionStats], float | None]) -> Reader:
    return lambda summary: read(summary.sessions) if summary.sessions else None


def _session_duration(stat: str) -> Reader:
    return _sessions_count(lambda sessions: stat_of(sessions.duration, stat))


SESSIONS_STARTED = Metric(
    "sessions_started", "Sessions started", COUNT, True, _sessions_count(lambda s: s.started),
    definition="sessions whose first turn was sent",
)  # fmt: skip
SESSIONS_COMPLETED = Metric(
    "sessions_completed", "Sessions completed", COUNT, True,
    _sessions_count(lambda s: s.completed),
    definition="sessions whose every turn succeeded",
)  # fmt: skip
SESSIONS_ABANDONED = Metric(
    "sessions_abandoned", "Sessions abandoned", COUNT, False,
    _sessions_count(lambda s: s.abandoned),
    definition="sessions ended by a failed turn (a conversation cannot go on without its answer)",
)  # fmt: skip
MEAN_TURNS = Metric(
    "mean_turns", "Mean turns per session", TURNS, True, _sessions_count(lambda s: s.mean_turns),
    definition="successful turns of the sessions that ended (completed or abandoned) / those "
    "sessions",
)  # fmt: skip
SESSION_DURATION = [
    Metric(
        f"session_duration.{stat}", f"Time to finish a session {stat}", SECONDS, False,
        _session_duration(stat),
        definition="from the intended send time of a completed session's first turn to the end "
        "of its last answer, think times included, in seconds",
    )
    for stat in STATS
]  # fmt: skip
SESSION_METRICS = [
    SESSIONS_STARTED, SESSIONS_COMPLETED, SESSIONS_ABANDONED, MEAN_TURNS, *SESSION_DURATION,
]  # fmt: skip
"""The sessions of a `sessions` run (`summary.sessions`)."""
ALL = [*HEADLINE, *STEADY, *SCHEDULE, *GOODPUT_METRICS, *SESSION_METRICS]
"""Every metric of one run; `key` is unique and stable (CSV/JSON and the HTML use it)."""
BY_KEY = {metric.key: metric for metric in ALL}
