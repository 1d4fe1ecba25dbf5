"""Read the server's own Prometheus `/metrics` so each interval can say whether the cache was hit.

One scrape becomes a `ServerSample`: a few canonical counters and gauges, summed over engines
(vLLM data-parallel engines, LMCache workers) and labels, whatever the serving stack calls them.
Counters are cumulative on the server, so the console and the summary look at differences
between two samples (`interval_view`, `run_view`), which also makes the numbers "this run only"
instead of "since the server started".

Names come from the public sources: vLLM `vllm/v1/metrics/loggers.py` (current names and the
`gpu_`-prefixed ones deprecated in 0.9), `vllm/config/cache.py` (`cache_config_info` labels), the
OffloadingConnector metrics (flat `kv_offload_*_bytes` and the deprecated `kv_offload_total_bytes`
with a `transfer_type` label, dual-written, so never both), SGLang
`python/sglang/srt/metrics/collector.py` and LMCache `observability.py`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Labels = Mapping[str, str]
Series = dict[str, list[tuple[Labels, float]]]

# Canonical key -> names that carry it, newest first: several names are aliases of one
# another (vLLM renamed `gpu_prefix_cache_*` and `gpu_cache_usage_perc` in 0.9 and wrote both
# for a while), so the first one present is taken, never the sum.
_SUMMED_COUNTERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prefix_queries", ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")),
    ("prefix_hits", ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")),
    ("external_queries", ("vllm:external_prefix_cache_queries",)),
    ("external_hits", ("vllm:external_prefix_cache_hits",)),
    ("prompt_tokens", ("vllm:prompt_tokens", "sglang:prompt_tokens")),
    ("generation_tokens", ("vllm:generation_tokens", "sglang:generation_tokens")),
    ("preemptions", ("vllm:num_preemptions", "sglang:num_retracted_requests")),
    ("lmcache_requested_tokens", ("lmcache:num_requested_tokens",)),
    ("lmcache_hit_tokens", ("lmcache:num_hit_tokens",)),
    ("lmcache_stored_tokens", ("lmcache:num_stored_tokens",)),
)
_SUMMED_GAUGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("running", ("vllm:num_requests_running", "sglang:num_running_reqs")),
    ("waiting", ("vllm:num_requests_waiting", "sglang:num_queue_reqs")),
    ("lmcache_local_cache_bytes", ("lmcache:local_cache_usage",)),
)
# Fractions: the mean over engines, as vLLM's own aggregated log line does.
_MEAN_GAUGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "kv_usage_perc",
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
    ),
    ("sglang_cache_hit_rate", ("sglang:cache_hit_rate",)),
)
_BY_SOURCE = "vllm:prompt_tokens_by_source"
_OFFLOAD_DEPRECATED = "vllm:kv_offload_total_bytes"
_CACHE_CONFIG = "vllm:cache_config_info"
_SGLANG_CACHED = "sglang:cached_tokens"
_SGLANG_CAPACITY = "sglang:max_total_num_tokens"

# Series are keyed by the name without `_total` (counters carry it on the wire, some exporters
# omit it), so a line is kept when it starts with one of these names.
_WANTED = (
    *(
        name
        for table in (_SUMMED_COUNTERS, _SUMMED_GAUGES, _MEAN_GAUGES)
        for _, names in table
        for name in names
    ),
    _BY_SOURCE,
    "vllm:kv_offload_load_bytes",
    "vllm:kv_offload_store_bytes",
    _OFFLOAD_DEPRECATED,
    _CACHE_CONFIG,
    _SGLANG_CACHED,
    _SGLANG_CAPACITY,
)

# SGLang labels cached prompt tokens by the tier that held them; "total" (and no label, in older
# versions) cannot be split, so it counts as the GPU radix cache, which is where SGLang hits
# unless HiCache is on.
_SGLANG_OFFLOAD_SOURCES = ("host", "storage")


class MetricsFormatError(ValueError):
    """The `/metrics` body is not Prometheus text."""


@dataclass(frozen=True)
class ServerSample:
    """Canonical server counters and gauges from one scrape.

    Counters (cumulative, tokens unless the name says bytes): `prefix_queries`/`prefix_hits`
    (vLLM local cache), `external_queries`/`external_hits` (vLLM KV connector: LMCache,
    OffloadingConnector), `prompt_tokens`, `generation_tokens`, `computed_prompt_tokens`,
    `preemptions`, `offload_load_bytes`, `offload_store_bytes`, `sglang_cached_device`,
    `sglang_cached_offload`, `lmcache_requested_tokens`, `lmcache_hit_tokens`,
    `lmcache_stored_tokens`. Gauges: `kv_usage_perc` (mean over engines), `running`, `waiting`,
    `gpu_capacity_tokens` (sums), `sglang_cache_hit_rate` (mean), `lmcache_local_cache_bytes`.
    A key is absent when the server does not expose it.
    """

    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.counters or self.gauges)


def parse_server_metrics(text: str) -> ServerSample:
    """Turn a `/metrics` body into a `ServerSample`; `MetricsFormatError` if it is not Prometheus.

    Only the lines of the families we use reach the parser: a vLLM text is mostly histogram
    buckets, and parsing all of it costs tens of milliseconds of event-loop time per scrape.
    """
    series = _read_series(text)
    counters: dict[str, float] = {}
    gauges: dict[str, float] = {}
    for target, table, aggregate in (
        (counters, _SUMMED_COUNTERS, _sum),
        (gauges, _SUMMED_GAUGES, _sum),
        (gauges, _MEAN_GAUGES, _mean),
    ):
        for key, names in table:
            _put(target, key, _first(series, aggregate, *names))
    _put(
        counters,
        "computed_prompt_tokens",
        _labelled_sum(series, _BY_SOURCE, "source", "local_compute"),
    )
    _put(counters, "offload_load_bytes", _offload_bytes(series, "load", "_to_GPU"))
    _put(counters, "offload_store_bytes", _offload_bytes(series, "store", "GPU_to_"))
    _put_sglang_cached(counters, series)
    _put(gauges, "gpu_capacity_tokens", _gpu_capacity(series))
    return ServerSample(counters=counters, gauges=gauges)


def interval_view(prev: ServerSample | None, cur: ServerSample) -> dict[str, float]:
    """What the server did between two scrapes, for the 5-second block.

    Keys: `gpu_hit_rate`, `external_hit_rate`, `kv_usage_perc`, `running`, `waiting`,
    `preemptions`, `offload_load_bytes`, `prompt_tokens`, `external_hit_tokens`,
    `gpu_hit_tokens`, `sglang_cache_hit_rate`, `lmcache_hit_rate`; a key is left out when the
    server does not expose it, and a rate when nothing was looked up in the interval (0/0 is
    not 0 %). Without `prev` the counters count from the server's start.
    """
    view = _counter_view(_deltas(prev, cur))
    for key in ("kv_usage_perc", "running", "waiting", "sglang_cache_hit_rate"):
        _put(view, key, cur.gauges.get(key))
    return view


def run_view(first: ServerSample, last: ServerSample) -> dict[str, float]:
    """The whole run for the summary and the verdict: `interval_view`'s counter keys plus totals.

    Extra keys: `gpu_query_tokens`, `external_query_tokens`, `computed_prompt_tokens`,
    `generation_tokens`, `offload_store_bytes`, `lmcache_stored_tokens`, and from the last
    sample `gpu_capacity_tokens` and `lmcache_local_cache_bytes`. A counter reset between the
    two samples is only seen as a smaller value; build it from samples close enough together
    to not straddle a server restart.
    """
    deltas = _deltas(first, last)
    view = _counter_view(deltas)
    local = _local_lookups(deltas)
    if local is not None:
        view["gpu_query_tokens"] = local[1]
    external = _external_lookups(deltas, local)
    if external is not None:
        view["external_query_tokens"] = external[1]
    for key in (
        "computed_prompt_tokens",
        "generation_tokens",
        "offload_store_bytes",
        "lmcache_stored_tokens",
    ):
        _put(view, key, deltas.get(key))
    for key in ("gpu_capacity_tokens", "lmcache_local_cache_bytes"):
        _put(view, key, last.gauges.get(key))
    return view


def default_metrics_url(base_url: str) -> str:
    """`scheme://host:port/metrics`: engines serve it at the root, not under `/v1`."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/metrics", "", ""))


class ServerMetricsScraper:
    """Fetches and parses `/metrics` once per interval; never raises.

    A failure returns None and sets `unavailable_reason` (one line); `pop_notice()` hands that
    line out once so the console says it once, not every five seconds. A 404-like answer or a
    body without vLLM/SGLang/LMCache metrics stops further scrapes (the server will not grow
    them); a refused connection, a timeout or a 5xx is retried next interval.

    Its session's pool needs a free connection while the benchmark's streams hold theirs
    (a limit above the in-flight maximum, or a session of its own), or the scrape waits behind
    them and times out.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        headers: Mapping[str, str] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.unavailable_reason: str | None = None
        self._session = session
        self._headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._stopped = False
        self._notice_pending = False
        self._noticed = False

    async def scrape(self) -> ServerSample | None:
        if self._stopped:
            return None
        try:
            text = await self._fetch()
        except asyncio.TimeoutError:
            return self._fail(f"{self.url} did not answer within {self._timeout.total:g} s")
        except _StatusError as exc:
            return self._fail(str(exc), permanent=exc.permanent)
        except aiohttp.ClientError as exc:
            return self._fail(f"cannot reach {self.url} ({_one_line(exc)})")
        try:
            sample = parse_server_metrics(text)
        except MetricsFormatError as exc:
            return self._fail(f"{self.url} is not Prometheus text ({exc})", permanent=True)
        if not sample:
            return self._fail(f"{self.url} has no vLLM, SGLang or LMCache metrics", permanent=True)
        self.unavailable_reason = None
        return sample

    @property
    def stopped(self) -> bool:
        """True once the endpoint has shown it will never serve usable metrics."""
        return self._stopped

    @staticmethod
    def interval(prev: ServerSample | None, cur: ServerSample) -> dict[str, float]:
        """`interval_view`, where the caller holds the scraper."""
        return interval_view(prev, cur)

    def pop_notice(self) -> str | None:
        """The reason the server's metrics are missing, the first time only."""
        if not self._notice_pending or self._noticed:
            return None
        self._noticed = True
        return f"server metrics unavailable: {self.unavailable_reason}"

    async def _fetch(self) -> str:
        async with self._session.get(
            self.url, headers=self._headers, timeout=self._timeout, allow_redirects=True
        ) as resp:
            if resp.status != 200:
                raise _StatusError(self.url, resp.status)
            return await resp.text(errors="replace")

    def _fail(self, reason: str, permanent: bool = False) -> None:
        self.unavailable_reason = reason
        self._notice_pending = True
        self._stopped = self._stopped or permanent


class _StatusError(Exception):
    """A non-200 answer. Client errors (404, 401, 405, ...) will not change on the next scrape;
    server errors, timeouts and rate limits may pass."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(f"{url} answered HTTP {status}")
        self.permanent = 400 <= status < 500 and status not in (408, 429)


def _read_series(text: str) -> Series:
    kept = "\n".join(line for line in text.splitlines() if line.startswith(_WANTED))
    series: Series = {}
    try:
        for family in text_string_to_metric_families(kept):
            for sample in family.samples:
                value = float(sample.value)
                if math.isfinite(value):
                    series.setdefault(_base(sample.name), []).append((sample.labels, value))
    except (ValueError, IndexError, TypeError) as exc:
        raise MetricsFormatError(_one_line(exc)) from exc
    if not series and not _looks_like_prometheus(text):
        raise MetricsFormatError("no metric lines")
    return series


def _looks_like_prometheus(text: str) -> bool:
    """Any text with no line of ours: is it some other exporter, or an HTML/JSON page?"""
    try:
        for _ in text_string_to_metric_families(text):
            pass
    except (ValueError, IndexError, TypeError):
        return False
    return True


def _base(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


def _put(target: dict[str, float], key: str, value: float | None) -> None:
    if value is not None:
        target[key] = value


def _first(
    series: Series, aggregate: Callable[[Iterable[float]], float], *names: str
) -> float | None:
    """The first of several names the server exposes (newer name first; they are aliases)."""
    for name in names:
        if name in series:
            return aggregate(value for _, value in series[name])
    return None


def _sum(values: Iterable[float]) -> float:
    return float(sum(values))


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def _labelled_sum(series: Series, name: str, label: str, wanted: str) -> float | None:
    rows = series.get(name)
    if rows is None:
        return None
    return float(sum(value for labels, value in rows if labels.get(label) == wanted))


def _offload_bytes(series: Series, direction: str, transfer_match: str) -> float | None:
    """Bytes moved by vLLM's offloading connector; the flat name, else the deprecated labelled one.

    vLLM writes both for the CPU tier, so adding them would double the traffic.
    """
    flat = _first(series, _sum, f"vllm:kv_offload_{direction}_bytes")
    if flat is not None:
        return flat
    rows = series.get(_OFFLOAD_DEPRECATED)
    if rows is None:
        return None
    return float(
        sum(value for labels, value in rows if transfer_match in labels.get("transfer_type", ""))
    )


def _put_sglang_cached(counters: dict[str, float], series: Series) -> None:
    """SGLang's cached prompt tokens split into GPU radix cache and HiCache (host, storage) hits.

    Labelled children only appear after their first hit, so the GPU count is 0 (not missing)
    whenever SGLang's token counters are there at all.
    """
    if "sglang:prompt_tokens" not in series:
        return
    device = 0.0
    offload: float | None = None
    for labels, value in series.get(_SGLANG_CACHED, []):
        if labels.get("cache_source", "total").startswith(_SGLANG_OFFLOAD_SOURCES):
            offload = (offload or 0.0) + value
        else:
            device += value
    counters["sglang_cached_device"] = device
    _put(counters, "sglang_cached_offload", offload)


def _gpu_capacity(series: Series) -> float | None:
    """GPU KV capacity in tokens, summed over engines (each data-parallel engine has its own pool).

    vLLM: `kv_cache_size_tokens` (recent, right for hybrid models) else num_gpu_blocks x
    block_size, from `cache_config_info` labels ("None" until profiling is done). SGLang:
    `max_total_num_tokens`.
    """
    total = 0.0
    found = False
    for labels, _ in series.get(_CACHE_CONFIG, []):
        tokens = _int(labels.get("kv_cache_size_tokens"))
        if tokens is None:
            blocks, size = _int(labels.get("num_gpu_blocks")), _int(labels.get("block_size"))
            tokens = blocks * size if blocks is not None and size is not None else None
        if tokens is not None:
            total += tokens
            found = True
    if found:
        return total
    return _first(series, _sum, _SGLANG_CAPACITY)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _deltas(prev: ServerSample | None, cur: ServerSample) -> dict[str, float]:
    """Per-counter increase; a counter below its previous value was reset, so all of it is new."""
    before = prev.counters if prev is not None else {}
    deltas = {}
    for key, value in cur.counters.items():
        old = before.get(key, 0.0)
        deltas[key] = value - old if value >= old else value
    return deltas


def _local_lookups(d: Mapping[str, float]) -> tuple[float, float] | None:
    """(hit tokens, looked-up tokens) of the GPU prefix cache."""
    if "prefix_queries" in d:
        return d.get("prefix_hits", 0.0), d["prefix_queries"]
    if "sglang_cached_device" in d:
        return d["sglang_cached_device"], d.get("prompt_tokens", 0.0)
    return None


def _external_lookups(
    d: Mapping[str, float], local: tuple[float, float] | None
) -> tuple[float, float] | None:
    """(hit tokens, looked-up tokens) of the tier behind the GPU: what the GPU cache missed."""
    if "external_queries" in d:
        return d.get("external_hits", 0.0), d["external_queries"]
    if "sglang_cached_offload" in d and local is not None:
        return d["sglang_cached_offload"], max(local[1] - local[0], 0.0)
    return None


def _counter_view(d: Mapping[str, float]) -> dict[str, float]:
    view: dict[str, float] = {}
    local = _local_lookups(d)
    if local is not None:
        view["gpu_hit_tokens"] = local[0]
        _put(view, "gpu_hit_rate", _rate(*local))
    external = _external_lookups(d, local)
    if external is not None:
        view["external_hit_tokens"] = external[0]
        _put(view, "external_hit_rate", _rate(*external))
    for key in ("preemptions", "offload_load_bytes", "prompt_tokens"):
        _put(view, key, d.get(key))
    if "lmcache_requested_tokens" in d:
        _put(
            view,
            "lmcache_hit_rate",
            _rate(d.get("lmcache_hit_tokens", 0.0), d["lmcache_requested_tokens"]),
        )
    return view


def _rate(hits: float, queries: float) -> float | None:
    return hits / queries if queries > 0 else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
