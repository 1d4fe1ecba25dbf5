"""Read the server's own Prometheus `/metrics` so each interval can say whether the cache was hit.

One scrape becomes a `ServerSample`: a few canonical counters and gauges, summed over engines
(vLLM data-parallel engines, LMCache workers) and labels, whatever the serving stack calls them.
Counters are cumulative on the server, so the console and the summary look at differences
between two samples (`interval_view`, `run_view`), which also makes the numbers "this run only"
instead of "since the server started".

The metric names read are those vLLM's v1 engine exposes (current names and the `gpu_`-prefixed
ones deprecated in 0.9, and the `cache_config_info` labels), its OffloadingConnector (flat
`kv_offload_*_bytes` and the deprecated `kv_offload_total_bytes` with a `transfer_type` label,
written side by side, so never both are counted), SGLang's and LMCache's. The keys of the views
handed on are declared, with their meaning, in `results.catalogue.server`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tmesh.results.catalogue import server as figures

Labels = Mapping[str, str]
Series = dict[str, list[tuple[Labels, float]]]

# Counters of a sample that only feed the views' rates (the others keep their catalogue key).
_PREFIX_QUERIES, _PREFIX_HITS = "prefix_queries", "prefix_hits"
_EXTERNAL_QUERIES, _EXTERNAL_HITS = "external_queries", "external_hits"
_LMCACHE_REQUESTED, _LMCACHE_HITS = "lmcache_requested_tokens", "lmcache_hit_tokens"
_SGLANG_DEVICE, _SGLANG_OFFLOAD = "sglang_cached_device", "sglang_cached_offload"

# Sample key -> names that carry it, newest first: several names are aliases of one
# another (vLLM renamed `gpu_prefix_cache_*` and `gpu_cache_usage_perc` in 0.9 and wrote both
# for a while), so the first one present is taken, never the sum.
_SUMMED_COUNTERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (_PREFIX_QUERIES, ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")),
    (_PREFIX_HITS, ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")),
    (_EXTERNAL_QUERIES, ("vllm:external_prefix_cache_queries",)),
    (_EXTERNAL_HITS, ("vllm:external_prefix_cache_hits",)),
    (figures.PROMPT_TOKENS.key, ("vllm:prompt_tokens", "sglang:prompt_tokens")),
    (figures.GENERATION_TOKENS.key, ("vllm:generation_tokens", "sglang:generation_tokens")),
    (figures.PREEMPTIONS.key, ("vllm:num_preemptions", "sglang:num_retracted_requests")),
    (_LMCACHE_REQUESTED, ("lmcache:num_requested_tokens",)),
    (_LMCACHE_HITS, ("lmcache:num_hit_tokens",)),
    (figures.LMCACHE_STORED_TOKENS.key, ("lmcache:num_stored_tokens",)),
)
_SUMMED_GAUGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (figures.RUNNING.key, ("vllm:num_requests_running", "sglang:num_running_reqs")),
    (figures.WAITING.key, ("vllm:num_requests_waiting", "sglang:num_queue_reqs")),
    (figures.LMCACHE_LOCAL_CACHE_BYTES.key, ("lmcache:local_cache_usage",)),
)
# Fractions: the mean over engines, as vLLM's own aggregated log line does.
_MEAN_GAUGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        figures.KV_USAGE.key,
        ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"),
    ),
    (figures.SGLANG_CACHE_HIT_RATE.key, ("sglang:cache_hit_rate",)),
)
# Gauges the views pass on as they were at the later scrape.
_INTERVAL_GAUGES = (
    figures.KV_USAGE,
    figures.RUNNING,
    figures.WAITING,
    figures.SGLANG_CACHE_HIT_RATE,
)
_RUN_GAUGES = (figures.GPU_CAPACITY_TOKENS, figures.LMCACHE_LOCAL_CACHE_BYTES)
# Counters only the whole run's view passes on (the interval's are in `_counter_view`).
_RUN_COUNTERS = (
    figures.COMPUTED_PROMPT_TOKENS,
    figures.GENERATION_TOKENS,
    figures.OFFLOAD_STORE_BYTES,
    figures.LMCACHE_STORED_TOKENS,
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
    """The server's counters and gauges from one scrape, summed over engines and labels.

    Counters are cumulative. Besides the catalogue's keys, the counters hold the lookups and
    hits the views turn into rates: `prefix_queries`/`prefix_hits` (vLLM's GPU prefix cache),
    `external_queries`/`external_hits` (vLLM's KV connector: LMCache, OffloadingConnector),
    `sglang_cached_device`/`sglang_cached_offload` (SGLang's cached prompt tokens by tier) and
    `lmcache_requested_tokens`/`lmcache_hit_tokens`. A key is absent when the server does not
    expose it.
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
        figures.COMPUTED_PROMPT_TOKENS.key,
        _labelled_sum(series, _BY_SOURCE, "source", "local_compute"),
    )
    _put(counters, figures.OFFLOAD_LOAD_BYTES.key, _offload_bytes(series, "load", "_to_GPU"))
    _put(counters, figures.OFFLOAD_STORE_BYTES.key, _offload_bytes(series, "store", "GPU_to_"))
    _put_sglang_cached(counters, series)
    _put(gauges, figures.GPU_CAPACITY_TOKENS.key, _gpu_capacity(series))
    return ServerSample(counters=counters, gauges=gauges)


def interval_view(prev: ServerSample | None, cur: ServerSample) -> dict[str, float]:
    """What the server did between two scrapes, for the 5-second block.

    Each cache tier's hit rate and hit tokens, prompt tokens, preemptions and offload loads, and
    the gauges of `cur`; a key is left out when the server does not expose it, and a rate when
    nothing was looked up in the interval (0/0 is not 0 %). Without `prev` the counters count
    from the server's start.
    """
    view = _counter_view(_deltas(prev, cur))
    for metric in _INTERVAL_GAUGES:
        _put(view, metric.key, cur.gauges.get(metric.key))
    return view


def run_view(first: ServerSample, last: ServerSample) -> dict[str, float]:
    """The whole run for the summary and the verdict: `interval_view`'s counters plus totals.

    It adds the tokens looked up in each tier, more token and byte counts, and the GPU capacity
    and LMCache usage of the last sample. A counter reset between the two samples is only seen
    as a smaller value; build it from samples close enough together to not straddle a server
    restart.
    """
    deltas = _deltas(first, last)
    view = _counter_view(deltas)
    local = _local_lookups(deltas)
    if local is not None:
        view[figures.GPU_QUERY_TOKENS.key] = local[1]
    external = _external_lookups(deltas, local)
    if external is not None:
        view[figures.EXTERNAL_QUERY_TOKENS.key] = external[1]
    for metric in _RUN_COUNTERS:
        _put(view, metric.key, deltas.get(metric.key))
    for metric in _RUN_GAUGES:
        _put(view, metric.key, last.gauges.get(metric.key))
    return view


def default_metrics_url(base_url: str) -> str:
    """`scheme://host:port/metrics`: engines serve it at the root, not under `/v1`."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/metrics", "", ""))


class ServerMetricsScraper:
    """Fetches and parses `/metrics` once per interval; never raises.

    A failure returns None and sets `unavailable_reason` (one line) until a scrape succeeds; the
    caller decides how often to say it. A 404-like answer or a body without vLLM/SGLang/LMCache
    metrics stops further scrapes (the server will not grow them); a refused connection, a
    timeout or a 5xx is retried next interval.

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

    async def scrape(self) -> ServerSample | None:
        if self._stopped:
            return None
        try:
            sample = await self._read()
        except _Unavailable as exc:
            self.unavailable_reason = str(exc)
            self._stopped = self._stopped or exc.permanent
            return None
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

    async def _read(self) -> ServerSample:
        try:
            text = await self._fetch()
        except asyncio.TimeoutError:
            raise _Unavailable(
                f"{self.url} did not answer within {self._timeout.total:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise _Unavailable(f"cannot reach {self.url} ({_one_line(exc)})") from None
        try:
            sample = parse_server_metrics(text)
        except MetricsFormatError as exc:
            raise _Unavailable(f"{self.url} is not Prometheus text ({exc})", True) from None
        if not sample:
            raise _Unavailable(f"{self.url} has no vLLM, SGLang or LMCache metrics", True)
        return sample

    async def _fetch(self) -> str:
        async with self._session.get(
            self.url, headers=self._headers, timeout=self._timeout, allow_redirects=True
        ) as resp:
            if resp.status != 200:
                raise _Unavailable(
                    f"{self.url} answered HTTP {resp.status}", _permanent_status(resp.status)
                )
            return await resp.text(errors="replace")


class _Unavailable(Exception):
    """Why a scrape got no sample; `permanent` when retrying cannot help."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


def _permanent_status(status: int) -> bool:
    """Client errors (404, 401, 405, ...) will not change on the next scrape; server errors,
    timeouts and rate limits may pass."""
    return 400 <= status < 500 and status not in (408, 429)


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
    counters[_SGLANG_DEVICE] = device
    _put(counters, _SGLANG_OFFLOAD, offload)


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
    if _PREFIX_QUERIES in d:
        return d.get(_PREFIX_HITS, 0.0), d[_PREFIX_QUERIES]
    if _SGLANG_DEVICE in d:
        return d[_SGLANG_DEVICE], d.get(figures.PROMPT_TOKENS.key, 0.0)
    return None


def _external_lookups(
    d: Mapping[str, float], local: tuple[float, float] | None
) -> tuple[float, float] | None:
    """(hit tokens, looked-up tokens) of the tier behind the GPU: what the GPU cache missed."""
    if _EXTERNAL_QUERIES in d:
        return d.get(_EXTERNAL_HITS, 0.0), d[_EXTERNAL_QUERIES]
    if _SGLANG_OFFLOAD in d and local is not None:
        return d[_SGLANG_OFFLOAD], max(local[1] - local[0], 0.0)
    return None


def _counter_view(d: Mapping[str, float]) -> dict[str, float]:
    view: dict[str, float] = {}
    local = _local_lookups(d)
    if local is not None:
        view[figures.GPU_HIT_TOKENS.key] = local[0]
        _put(view, figures.GPU_HIT_RATE.key, _rate(*local))
    external = _external_lookups(d, local)
    if external is not None:
        view[figures.EXTERNAL_HIT_TOKENS.key] = external[0]
        _put(view, figures.EXTERNAL_HIT_RATE.key, _rate(*external))
    for metric in (figures.PREEMPTIONS, figures.OFFLOAD_LOAD_BYTES, figures.PROMPT_TOKENS):
        _put(view, metric.key, d.get(metric.key))
    if _LMCACHE_REQUESTED in d:
        _put(
            view,
            figures.LMCACHE_HIT_RATE.key,
            _rate(d.get(_LMCACHE_HITS, 0.0), d[_LMCACHE_REQUESTED]),
        )
    return view


def _rate(hits: float, queries: float) -> float | None:
    return hits / queries if queries > 0 else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
