"""What the user reads: the seed's text blocks, our extra lines, the final summary and a live view.

The seed's labels and their order are a contract (people grep and parse them), so every seed line
is printed with the seed's exact label text; only the value changes: it carries its unit after a
space (`Global Average TTFT: 1.945 s`, `... Throughput: 46750.2 tokens/s`), so `label: number unit`
parses as `line.split(": ", 1)` then `value.split()[0]`. Throughputs are tokens per second (the
seed's "bytes" wording was wrong). Seconds are shown to 4 significant digits, tokens/s to 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import orjson
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    MetricStats,
    RunSummary,
    WindowStats,
    WorkloadSpec,
)

RUN_FOREVER_NOTE = "NOTE: tmesh-cli benchmark will run forever until you interrupt the process."

NOT_AVAILABLE = "n/a"

_SERVER_LINES: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Server Prefix Cache Hit Rate",
        (
            ("gpu_hit_rate", "GPU"),
            ("external_hit_rate", "external"),
            ("sglang_cache_hit_rate", "SGLang"),
            ("lmcache_hit_rate", "LMCache"),
        ),
    ),
    (
        "Server Prompt Tokens",
        (
            ("prompt_tokens", "total"),
            ("gpu_hit_tokens", "GPU hits"),
            ("external_hit_tokens", "external hits"),
        ),
    ),
    ("Server KV Cache Usage", (("kv_usage_perc", ""),)),
    ("Server Requests", (("running", "running"), ("waiting", "waiting"))),
    ("Server Preemptions", (("preemptions", ""),)),
    ("Server Offload Loaded", (("offload_load_bytes", ""),)),
)
_FRACTION_SUFFIXES = ("_rate", "_perc")


def format_discovery(
    endpoint_given: str,
    api_key_masked: str,
    normalized: str,
    model: str,
    offload_size: float,
    models_found: list[str] | None = None,
) -> str:
    """The seed's discovery block; a last line lists the models when the server offers several."""
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


def format_workload(spec: WorkloadSpec, oracle_name: str, exact: bool) -> str:
    """The seed's "Workload Specifications" block, then how tokens were counted and the KV size."""
    kv = "unknown" if spec.kv_bytes_per_token is None else f"{spec.kv_bytes_per_token}"
    return "\n".join(
        [
            "Workload Specifications:",
            f"Model: {spec.model}",
            f"Number of Contexts: {spec.num_contexts}",
            f"Number of Questions per Context: {spec.questions_per_context}",
            f"Max Inflight Requests (Load-Balancing): {spec.max_inflight}",
            f"Input Length: {spec.input_length}",
            f"Output Length: {spec.output_length}",
            f"Token Counting: {oracle_name} ({'exact' if exact else 'approximate'})",
            f"KV Bytes per Token: {kv}",
        ]
    )


def interval_lines(snap: IntervalSnapshot) -> list[tuple[str, str]]:
    """(label, value) pairs of the 5-second block: the seed's lines, then ours.

    An interval in which no request succeeded has no averages to show, so its five seed lines
    give way to one "no requests finished" line (label ""), "succeeded" if some failed (the errors
    line below says how).
    """
    g, i = snap.global_stats, snap.interval_stats
    pairs = [
        ("Elapsed Time", f"{snap.elapsed:.2f} s"),
        ("Total Number of Requests Processed", f"{snap.total_requests}"),
        ("QPS", _sig(snap.qps)),
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
        (f"{scope} Average TTFT", _seconds(w.ttft.mean)),
        (f"{scope} Average ITL", _seconds(w.itl.mean)),
        (f"{scope} Average Prefill Throughput", _tokens_per_s(w.prefill_throughput.mean)),
        (f"{scope} Average Decode Throughput", _tokens_per_s(w.decode_throughput.mean)),
    ]


def _extra_pairs(snap: IntervalSnapshot) -> list[tuple[str, str]]:
    g, i = snap.global_stats, snap.interval_stats
    pairs = [
        (f"{name} p50 / p90 / p99", _percentiles(m))
        for name, m in (("TTFT", g.ttft), ("ITL", g.itl), ("E2E", g.e2e))
    ]
    pairs.append(("Errors", _errors(g.errors, i.errors, _interval_words(snap.interval_seconds))))
    pairs.append(("Context Rotations Completed", f"{snap.rotations}"))
    cold_warm = _cold_warm(snap.cold_ttft, snap.warm_ttft)
    pairs.append(("TTFT Cold / Warm (first visit / revisit)", cold_warm))
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
    return pairs


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
    """One line per group of the scraper's interval keys (`servermetrics.interval_view`).

    A key this table does not know (added to the scraper later) still shows, on "Server Other".
    """
    pairs = []
    for title, members in _SERVER_LINES:
        parts = [
            f"{label} {_server_value(key, server[key])}".strip()
            for key, label in members
            if key in server
        ]
        if parts:
            pairs.append((title, " · ".join(parts)))
    known = {key for _, members in _SERVER_LINES for key, _ in members}
    other = [f"{k} {_server_value(k, v)}" for k, v in sorted(server.items()) if k not in known]
    if other:
        pairs.append(("Server Other", " · ".join(other)))
    return pairs


def _server_value(key: str, value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    if key.endswith(_FRACTION_SUFFIXES) and 0.0 <= value <= 1.0:
        return f"{value * 100:.1f}%"
    if key.endswith("_bytes"):
        return _bytes(value)
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.4g}"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.{0 if unit == 'B' else 1}f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


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
    text = f"{_seconds(cold.mean)} (n={cold.count}) / {_seconds(warm.mean)} (n={warm.count})"
    if cold.mean and warm.mean:
        text += f", warm {cold.mean / warm.mean:.1f}x faster"
    return text


def _cached(w: WindowStats) -> str:
    mean = w.cached_tokens / w.cached_tokens_reported
    text = f"{mean:.0f} per request ({w.cached_tokens_reported} of {w.requests} requests reported"
    if w.cached_tokens_reported == w.requests and w.prompt_tokens:
        text += f", {100 * w.cached_tokens / w.prompt_tokens:.1f}% of prompt tokens"
    return text + ")"


def _percentiles(m: MetricStats) -> str:
    if not m.count:
        return NOT_AVAILABLE
    return f"{_sig(m.p50)} / {_sig(m.p90)} / {_sig(m.p99)} s"


def _sig(value: float | None, digits: int = 4) -> str:
    """`digits` significant digits in fixed notation (no exponent: users paste these)."""
    if value is None or not math.isfinite(value):
        return NOT_AVAILABLE
    value = float(f"{value:.{digits}g}")
    if value == 0:
        return f"{0:.{digits - 1}f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def _seconds(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{_sig(value)} s"


def _tokens_per_s(value: float | None) -> str:
    return NOT_AVAILABLE if value is None else f"{value:.1f} tokens/s"


def _interval_words(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds >= 1 else f"{seconds:.1f}"


def render_summary(summary: RunSummary, console: Console) -> None:
    """The final summary: run-level figures, per-request metrics, server view, verdict."""
    console.print(_run_table(summary))
    console.print(_metrics_table(summary))
    if summary.server:
        console.print(_table(server_pairs(summary.server), "Server metrics over the run"))
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
        ("Stop reason", s.stop_reason, ""),
        ("Elapsed", f"{s.elapsed:.1f} s", f"{max(0.0, s.elapsed - s.warmup_seconds):.1f} s"),
        ("Requests processed", f"{s.total_requests}", f"{s.steady.requests}"),
        ("Failed requests", _failures(s.overall), _failures(s.steady)),
        ("QPS", _sig(s.qps), _sig(s.steady_qps)),
        (
            "Input token throughput",
            _tokens_per_s(s.input_token_throughput),
            _tokens_per_s(s.steady_input_token_throughput),
        ),
        (
            "Output token throughput",
            _tokens_per_s(s.output_token_throughput),
            _tokens_per_s(s.steady_output_token_throughput),
        ),
        ("Context rotations completed", f"{s.rotations}", ""),
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
    for name in ("metric", "window", "n", "mean", "p50", "p90", "p99"):
        table.add_column(name, justify="left" if name in ("metric", "window") else "right")
    windows = [("overall", s.overall)]
    if s.warmup_seconds > 0:
        windows.append(("steady", s.steady))
    for label, unit, attr in _METRICS:
        for window, stats in windows:
            table.add_row(label, window, *_metric_cells(getattr(stats, attr), unit))
    table.add_row("TTFT cold (first visit)", "overall", *_metric_cells(s.cold_ttft, "s"))
    table.add_row("TTFT warm (revisit)", "overall", *_metric_cells(s.warm_ttft, "s"))
    return table


_METRICS = (
    ("TTFT", "s", "ttft"),
    ("ITL", "s", "itl"),
    ("E2E", "s", "e2e"),
    ("Prefill throughput", "tokens/s", "prefill_throughput"),
    ("Decode throughput", "tokens/s", "decode_throughput"),
)


def _metric_cells(m: MetricStats, unit: str) -> list[str]:
    fmt = _seconds if unit == "s" else _tokens_per_s
    return [f"{m.count}", *(fmt(v) for v in (m.mean, m.p50, m.p90, m.p99))]


class LiveView:
    """`--live`: the latest 5-second block as a table redrawn in place, with time left if known."""

    def __init__(self, duration: float | None = None, console: Console | None = None) -> None:
        self.duration = duration
        self._live = Live(_table([], "waiting for the first interval…"), console=console)

    def start(self) -> None:
        self._live.start()

    def update(self, snap: IntervalSnapshot) -> None:
        self._live.update(_table(interval_lines(snap), self._title(snap.elapsed)), refresh=True)

    def stop(self) -> None:
        self._live.stop()

    def __enter__(self) -> LiveView:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _title(self, elapsed: float) -> str:
        if self.duration is None:
            return f"tmesh benchmark: {elapsed:.0f} s elapsed (Ctrl-C to stop)"
        left = max(0.0, self.duration - elapsed)
        return f"tmesh benchmark: {elapsed:.0f} s elapsed, {left:.0f} s left"


def _table(pairs: Iterable[tuple[str, str]], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in pairs:
        table.add_row(label, value)
    return table
