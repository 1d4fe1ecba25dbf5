"""What the user reads: the 5-second block and the final summary.

The first twelve lines of the 5-second block are tmesh-cli's published output format: people grep
and parse them, so their labels and order never change, and each value carries its unit after a
space (`Global Average TTFT: 1.945 s`, `... Throughput: 46750.2 tokens/s`), so `label: number unit`
parses as `line.split(": ", 1)` then `value.split()[0]`. Names, units and the console's style of
writing values come from `results.catalogue`; this module only lays them out.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tmesh.bench.output.traffic import Grid, summary_grids, traffic_pairs
from tmesh.results.catalogue.metrics import (
    DECODE_THROUGHPUT,
    E2E,
    FAILED_REQUESTS,
    ITL,
    PREFILL_THROUGHPUT,
    QPS,
    QUANTITIES,
    RATES,
    ROTATIONS,
    STATS,
    STEADY_RATES,
    TOTAL_REQUESTS,
    TTFT,
    VISITS,
    stat_of,
    title_case,
)
from tmesh.results.catalogue.outcomes import error_kind_meaning, stop_reason_words
from tmesh.results.catalogue.server import LINES, SERVER, SOURCES, TMESH, ServerLine
from tmesh.results.catalogue.units import COUNT, console_value, console_values
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    MetricStats,
    RunSummary,
    WindowStats,
    WorkloadSpec,
)

RUN_FOREVER_NOTE = "NOTE: tmesh-cli benchmark will run forever until you interrupt the process."

_AVERAGED = (TTFT, ITL, PREFILL_THROUGHPUT, DECODE_THROUGHPUT)
"""The quantities of the block's `Global Average` and `Interval Average` lines, in order."""
_PERCENTILES = STATS[1:]
_SERVER_TABLES = {SERVER: "Server metrics over the run", TMESH: "Cache facts"}


def format_discovery(
    endpoint_given: str,
    api_key_masked: str,
    normalized: str,
    model: str,
    offload_size: float,
    models_found: list[str] | None = None,
) -> str:
    """The discovery block; a last line lists the models when the server offers several."""
    lines = [
        f"endpoint: {endpoint_given}",
        f"api_key: {api_key_masked}",
        f"normalized endpoint: {normalized}",
        f"found model: {model}",
        f"offload_size: {offload_size:g}",
    ]
    if models_found and len(models_found) > 1:
        lines.append(f"models found: {', '.join(models_found)} (use --model to choose)")
    return "\n".join(lines)


def format_workload(spec: WorkloadSpec, oracle_name: str, exact: bool, overhead: int = 0) -> str:
    """The "Workload Specifications" block, then how tokens were counted, what the server adds to
    each request (so `usage.prompt_tokens` = context + question + that), and the KV size.

    A sessions workload has its own lines (users, turns, system prompt, think time) in place of
    the contexts and questions; an open loop adds its request rate.
    """
    kv = "unknown" if spec.kv_bytes_per_token is None else f"{spec.kv_bytes_per_token}"
    lines = ["Workload Specifications:", f"Model: {spec.model}"]
    if spec.sessions is None:
        lines += [
            f"Number of Contexts: {spec.num_contexts}",
            f"Number of Questions per Context: {spec.questions_per_context}",
            f"Max Inflight Requests (Load-Balancing): {spec.max_inflight}",
            f"Input Length: {spec.input_length}",
        ]
        if spec.request_rate is not None:
            lines.append(f"Request Rate: {spec.request_rate:g} req/s ({spec.arrival} arrivals)")
    else:
        lines += _session_lines(spec)
    return "\n".join(
        [
            *lines,
            f"Output Length: {spec.output_length}",
            f"Token Counting: {oracle_name} ({'exact' if exact else 'approximate'})",
            f"Tokens the Server Adds per Request: {overhead} (BOS, chat template)",
            f"KV Bytes per Token: {kv}",
        ]
    )


def _session_lines(spec: WorkloadSpec) -> list[str]:
    sessions = spec.sessions
    assert sessions is not None
    if sessions.session_rate is None:
        arrive = f"Users (Sessions at Once): {sessions.users}"
    else:
        arrive = f"Session Rate: {sessions.session_rate:g} sessions/s ({spec.arrival} arrivals)"
    return [
        "Workload: sessions",
        arrive,
        f"Turns per Session: {sessions.turns}",
        f"System Prompt: {sessions.system_prompt}",
        f"Turn Input: {sessions.turn_input}",
        f"Think Time: {sessions.think_time:g} s ({sessions.think_time_dist})",
        f"Max Inflight Requests (Safety Cap): {spec.max_inflight}",
    ]


def interval_lines(snap: IntervalSnapshot) -> list[tuple[str, str]]:
    """(label, value) pairs of the 5-second block: the twelve fixed lines, then the others.

    An interval in which no request succeeded has no averages to show, so its five fixed lines
    give way to one "no requests finished" line (label ""), "succeeded" if some failed (the errors
    line below says how).
    """
    g, i = snap.global_stats, snap.interval_stats
    pairs = [
        ("Elapsed Time", f"{snap.elapsed:.2f} s"),
        ("Total Number of Requests Processed", f"{snap.total_requests}"),
        (QPS.label, console_value(snap.qps, QPS.unit)),
        *_average_pairs("Global", g),
    ]
    seconds = _interval_words(snap.interval_seconds)
    if i.requests:
        pairs.append((f"Requests Processed in Last {seconds} second Interval", f"{i.requests}"))
        pairs.extend(_average_pairs("Interval", i))
    else:
        verb = "succeeded" if i.errors else "finished"
        pairs.append(("", f"no requests {verb} in the last {seconds} s"))
    pairs.extend(_extra_pairs(snap))
    return pairs


def format_interval(snap: IntervalSnapshot) -> str:
    pairs = interval_lines(snap)
    return "\n".join(f"{label}: {value}" if label else value for label, value in pairs)


def format_interval_json(snap: IntervalSnapshot) -> str:
    """One line of JSON, the same object `intervals.jsonl` holds."""
    return orjson.dumps(snap).decode()


def _average_pairs(scope: str, w: WindowStats) -> list[tuple[str, str]]:
    return [
        (f"{scope} Average {title_case(q.short)}", console_value(q.of(w).mean, q.unit))
        for q in _AVERAGED
    ]


def _extra_pairs(snap: IntervalSnapshot) -> list[tuple[str, str]]:
    g, i = snap.global_stats, snap.interval_stats
    pairs = [
        (f"{q.short} {' / '.join(_PERCENTILES)}", _percentiles(q.of(g), q.unit))
        for q in (TTFT, ITL, E2E)
    ]
    pairs.append(("Errors", _errors(g.errors, i.errors, _interval_words(snap.interval_seconds))))
    pairs.extend((f"First Error ({kind})", text) for kind, text in snap.error_messages.items())
    pairs.append((title_case(ROTATIONS.console), console_value(snap.rotations, ROTATIONS.unit)))
    cold_warm = _cold_warm(snap.cold_ttft, snap.warm_ttft)
    pairs.append((_COLD_WARM_LABEL, cold_warm))
    if snap.interval_cold_ttft.count or snap.interval_warm_ttft.count:
        pairs.append(
            (
                "Interval TTFT Cold / Warm",
                _cold_warm(snap.interval_cold_ttft, snap.interval_warm_ttft),
            )
        )
    h = snap.health
    pairs.append(
        ("In-flight Requests (achieved / target)", f"{h.inflight_mean:.1f} / {h.inflight_target}")
    )
    pairs.append(
        (
            "Client Dispatch Delay / Loop Lag",
            f"{h.dispatch_delay_ms:.2f} ms / {h.loop_lag_ms:.1f} ms",
        )
    )
    warning = client_limit_warning(h)
    if warning:
        pairs.append(("WARNING", warning))
    if i.cached_tokens_reported:
        pairs.append(("Cached Prompt Tokens (usage, interval)", _cached(i)))
    if snap.server:
        pairs.extend(server_pairs(snap.server))
    pairs.extend(traffic_pairs(snap))
    return pairs


_COLD_WARM_LABEL = (
    f"TTFT {' / '.join(title_case(v.key) for v in VISITS)} ({' / '.join(v.label for v in VISITS)})"
)
LOOP_LAG_LIMIT_MS = 50.0
DISPATCH_DELAY_LIMIT_MS = 5.0


def client_limit_warning(health: ClientHealth) -> str | None:
    """Say so when the load generator, not the server, held the numbers back.

    A lagging event loop delays reading the first token (TTFT grows) and refilling slots (QPS
    drops); either would be blamed on the server if we stayed silent.
    """
    if health.loop_lag_ms > LOOP_LAG_LIMIT_MS:
        return (
            f"the client's event loop lagged {health.loop_lag_ms:.0f} ms: this machine, not the "
            "server, is limiting the run (try --workers or a bigger client machine)"
        )
    if health.dispatch_delay_ms > DISPATCH_DELAY_LIMIT_MS:
        return (
            f"the client took {health.dispatch_delay_ms:.1f} ms on average to refill a free slot: "
            "the load generator is the bottleneck"
        )
    return None


def server_pairs(server: dict[str, float]) -> list[tuple[str, str]]:
    """One line per `results.catalogue.server.LINES` entry that has a figure in `server`."""
    return [(line.title, text) for line, text in _server_lines(server)]


def _server_lines(server: dict[str, float]) -> list[tuple[ServerLine, str]]:
    found = []
    for line in LINES:
        parts = [
            f"{short} {console_value(server[metric.key], metric.unit)}".strip()
            for metric, short in line.members
            if metric.key in server
        ]
        if parts:
            found.append((line, " · ".join(parts)))
    return found


def _errors(total: dict[str, int], interval: dict[str, int], seconds: str) -> str:
    if not total:
        return "none"
    text = f"{sum(total.values())} ({_by_kind(total)})"
    if interval:
        return f"{text}; last {seconds} s: {sum(interval.values())} ({_by_kind(interval)})"
    return f"{text}; last {seconds} s: 0"


def _by_kind(errors: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items()))


def _cold_warm(cold: MetricStats, warm: MetricStats) -> str:
    seconds = TTFT.unit
    text = (
        f"{console_value(cold.mean, seconds)} (n={cold.count}) / "
        f"{console_value(warm.mean, seconds)} (n={warm.count})"
    )
    if cold.mean and warm.mean:
        text += f", warm {cold.mean / warm.mean:.1f}x faster"
    return text


def _cached(w: WindowStats) -> str:
    mean = w.cached_tokens / w.cached_tokens_reported
    text = f"{mean:.0f} per request ({w.cached_tokens_reported} of {w.requests} requests reported"
    if w.cached_tokens_reported == w.requests and w.prompt_tokens:
        text += f", {100 * w.cached_tokens / w.prompt_tokens:.1f}% of prompt tokens"
    return text + ")"


def _percentiles(m: MetricStats, unit: str) -> str:
    return console_values((stat_of(m, stat) for stat in _PERCENTILES), unit)


def _interval_words(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 1 else f"{seconds:.1f}"


def render_summary(summary: RunSummary, console: Console) -> None:
    """The final summary: run-level figures, per-request metrics, server view, verdict.

    The server view is two tables, what the server reported and what tmesh derived from it,
    each line with what it means.
    """
    console.print(_run_table(summary))
    console.print(_metrics_table(summary))
    console.print(Text(_METRICS_CAPTION, style="dim"))
    lines = _server_lines(summary.server or {})
    for source, words in SOURCES:
        rows = [(line.title, text, line.meaning) for line, text in lines if line.source == source]
        if rows:
            console.print(_explained_table(rows, f"{_SERVER_TABLES[source]}, {words}"))
    for grid in summary_grids(summary):
        console.print(_grid_table(grid))
    if summary.error_messages:
        errors = summary.error_messages.items()
        rows = [(kind, text, error_kind_meaning(kind)) for kind, text in errors]
        console.print(_explained_table(rows, "First error of each kind", wrap_values=True))
    if summary.verdict:
        console.print(f"Verdict: {summary.verdict}")


def _run_table(s: RunSummary) -> Table:
    steady = s.warmup_seconds > 0
    table = Table(title="tmesh benchmark summary", title_justify="left")
    table.add_column("")
    table.add_column("overall", justify="right")
    if steady:
        table.add_column(f"steady state (after {s.warmup_seconds:g} s)", justify="right")
    rows = [
        ("Stop reason", stop_reason_words(s.stop_reason), ""),
        ("Elapsed", f"{s.elapsed:.1f} s", f"{max(0.0, s.elapsed - s.warmup_seconds):.1f} s"),
        (
            TOTAL_REQUESTS.console,
            console_value(s.total_requests, COUNT),
            console_value(s.steady.requests, COUNT),
        ),
        (FAILED_REQUESTS.console, _failures(s.overall), _failures(s.steady)),
        *(
            (
                metric.console,
                console_value(metric.value(s), metric.unit),
                console_value(steady_metric.value(s), steady_metric.unit),
            )
            for metric, steady_metric in zip(RATES, STEADY_RATES, strict=True)
        ),
        (ROTATIONS.console, console_value(s.rotations, COUNT), ""),
        (
            "In-flight (achieved / target)",
            f"{s.health.inflight_mean:.1f} / {s.health.inflight_target}",
            "",
        ),
    ]
    for label, overall, steady_value in rows:
        table.add_row(label, overall, *([steady_value] if steady else []))
    return table


def _failures(w: WindowStats) -> str:
    total = sum(w.errors.values())
    return f"{total} ({_by_kind(w.errors)})" if total else "0"


def _metrics_table(s: RunSummary) -> Table:
    table = Table(title="Per-request metrics", title_justify="left")
    for name in ("metric", "window", "n", *STATS):
        table.add_column(name, justify="left" if name in ("metric", "window") else "right")
    windows = [("overall", s.overall)]
    if s.warmup_seconds > 0:
        windows.append(("steady", s.steady))
    for q in QUANTITIES:
        for window, stats in windows:
            table.add_row(q.short, window, *_metric_cells(q.of(stats), q.unit))
    for visit in VISITS:
        label = f"{TTFT.short} {visit.key} ({visit.label})"
        table.add_row(label, "overall", *_metric_cells(visit.ttft(s), TTFT.unit))
    return table


_METRICS_CAPTION = " · ".join(
    [
        *(f"{q.short}: {q.definition.split(':')[0]}" for q in QUANTITIES if ":" in q.definition),
        *(f"{v.key} ({v.label}): {v.meaning}" for v in VISITS),
    ]
)
"""What the table's abbreviations and the two kinds of visit mean."""


def _metric_cells(m: MetricStats, unit: str) -> list[str]:
    return [f"{m.count}", *(console_value(stat_of(m, stat), unit) for stat in STATS)]


def _grid_table(grid: Grid) -> Table:
    table = Table(title=grid.title, title_justify="left", show_header=grid.columns is not None)
    for index, column in enumerate(grid.columns or ["metric", "value"]):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in grid.rows:
        table.add_row(*row)
    return table


def _explained_table(
    rows: Iterable[tuple[str, str, str]], title: str, wrap_values: bool = False
) -> Table:
    """Each line's name with what it means beneath it, and its value beside: three columns
    would leave the meanings a sliver of a 120-column pipe beside the longest values."""
    table = Table(title=title, title_justify="left", show_header=False, show_lines=True)
    table.add_column("metric")
    table.add_column("value", justify="left" if wrap_values else "right", no_wrap=not wrap_values)
    for label, value, meaning in rows:
        table.add_row(Text.assemble(label, "\n", (meaning, "dim")), value)
    return table
