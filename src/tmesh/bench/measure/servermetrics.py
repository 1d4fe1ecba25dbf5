"""The server's own view of each interval and of the whole run, from its Prometheus `/metrics`.

One scrape per interval becomes a `ServerSample` (`measure.prometheus`). Counters are cumulative
on the server, so the console and the summary look at differences between two samples
(`interval_view`, `run_view`), which also makes the numbers "this run only" instead of "since the
server started". The keys of the views are declared, with their meaning, in
`results.catalogue.server`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from tmesh.bench.measure.prometheus import (
    EXTERNAL_HITS,
    EXTERNAL_QUERIES,
    LLAMACPP_CACHED,
    LMCACHE_HITS,
    LMCACHE_REQUESTED,
    PREFIX_HITS,
    PREFIX_QUERIES,
    SGLANG_DEVICE,
    SGLANG_OFFLOAD,
    MetricsFormatError,
    ServerSample,
    parse_server_metrics,
)
from tmesh.results.catalogue import server as figures
from tmesh.text import one_line

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
            raise _Unavailable(f"cannot reach {self.url} ({one_line(str(exc))})") from None
        try:
            sample = parse_server_metrics(text)
        except MetricsFormatError as exc:
            raise _Unavailable(f"{self.url} is not Prometheus text ({exc})", True) from None
        if not sample:
            raise _Unavailable(
                f"{self.url} has no vLLM, SGLang, LMCache or llama.cpp metrics", True
            )
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


def _put(target: dict[str, float], key: str, value: float | None) -> None:
    if value is not None:
        target[key] = value


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
    if PREFIX_QUERIES in d:
        return d.get(PREFIX_HITS, 0.0), d[PREFIX_QUERIES]
    if SGLANG_DEVICE in d:
        return d[SGLANG_DEVICE], d.get(figures.PROMPT_TOKENS.key, 0.0)
    if LLAMACPP_CACHED in d:
        return d[LLAMACPP_CACHED], d.get(figures.PROMPT_TOKENS.key, 0.0)
    return None


def _external_lookups(
    d: Mapping[str, float], local: tuple[float, float] | None
) -> tuple[float, float] | None:
    """(hit tokens, looked-up tokens) of the tier behind the GPU: what the GPU cache missed."""
    if EXTERNAL_QUERIES in d:
        return d.get(EXTERNAL_HITS, 0.0), d[EXTERNAL_QUERIES]
    if SGLANG_OFFLOAD in d and local is not None:
        return d[SGLANG_OFFLOAD], max(local[1] - local[0], 0.0)
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
    if LMCACHE_REQUESTED in d:
        _put(
            view,
            figures.LMCACHE_HIT_RATE.key,
            _rate(d.get(LMCACHE_HITS, 0.0), d[LMCACHE_REQUESTED]),
        )
    return view


def _rate(hits: float, queries: float) -> float | None:
    return hits / queries if queries > 0 else None
