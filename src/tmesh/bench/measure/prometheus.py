"""The server's Prometheus text turned into one `ServerSample`, whatever the engine calls things.

A few canonical counters and gauges, summed over engines (vLLM data-parallel engines, LMCache
workers) and labels. The metric names read are those vLLM's v1 engine exposes (current names and
the `gpu_`-prefixed ones deprecated in 0.9, and the `cache_config_info` labels), its
OffloadingConnector (flat `kv_offload_*_bytes` and the deprecated `kv_offload_total_bytes` with a
`transfer_type` label, written side by side, so never both are counted), SGLang's, LMCache's and
llama.cpp's `llamacpp:` counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tmesh.results.catalogue import server as figures
from tmesh.text import one_line

Labels = Mapping[str, str]
Series = dict[str, list[tuple[Labels, float]]]


# Counters of a sample that only feed the views' rates (the others keep their catalogue key).
PREFIX_QUERIES, PREFIX_HITS = "prefix_queries", "prefix_hits"
EXTERNAL_QUERIES, EXTERNAL_HITS = "external_queries", "external_hits"
LMCACHE_REQUESTED, LMCACHE_HITS = "lmcache_requested_tokens", "lmcache_hit_tokens"
SGLANG_DEVICE, SGLANG_OFFLOAD = "sglang_cached_device", "sglang_cached_offload"
LLAMACPP_CACHED = "llamacpp_cached_prompt_tokens"
# A gauge of a sample that only the ideal-cache score reads: the tokens per KV block.
KV_BLOCK_SIZE = "kv_block_size"


# Sample key -> names that carry it, newest first: several names are aliases of one
# another (vLLM renamed `gpu_prefix_cache_*` and `gpu_cache_usage_perc` in 0.9 and wrote both
# for a while), so the first one present is taken, never the sum.
_SUMMED_COUNTERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (PREFIX_QUERIES, ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")),
    (PREFIX_HITS, ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")),
    (EXTERNAL_QUERIES, ("vllm:external_prefix_cache_queries",)),
    (EXTERNAL_HITS, ("vllm:external_prefix_cache_hits",)),
    (figures.PROMPT_TOKENS.key, ("vllm:prompt_tokens", "sglang:prompt_tokens")),
    (
        figures.GENERATION_TOKENS.key,
        ("vllm:generation_tokens", "sglang:generation_tokens", "llamacpp:tokens_predicted"),
    ),
    (figures.PREEMPTIONS.key, ("vllm:num_preemptions", "sglang:num_retracted_requests")),
    (LMCACHE_REQUESTED, ("lmcache:num_requested_tokens",)),
    (LMCACHE_HITS, ("lmcache:num_hit_tokens",)),
    (figures.LMCACHE_STORED_TOKENS.key, ("lmcache:num_stored_tokens",)),
)


_SUMMED_GAUGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        figures.RUNNING.key,
        ("vllm:num_requests_running", "sglang:num_running_reqs", "llamacpp:requests_processing"),
    ),
    (
        figures.WAITING.key,
        ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred"),
    ),
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
_BY_SOURCE = "vllm:prompt_tokens_by_source"
_OFFLOAD_DEPRECATED = "vllm:kv_offload_total_bytes"
_CACHE_CONFIG = "vllm:cache_config_info"
_SGLANG_CACHED = "sglang:cached_tokens"
_SGLANG_CAPACITY = "sglang:max_total_num_tokens"
_LLAMACPP_COMPUTED = "llamacpp:prompt_tokens"
_LLAMACPP_CACHED = "llamacpp:prompt_tokens_cached"


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
    _LLAMACPP_COMPUTED,
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
    `sglang_cached_device`/`sglang_cached_offload` (SGLang's cached prompt tokens by tier),
    `lmcache_requested_tokens`/`lmcache_hit_tokens` and `llamacpp_cached_prompt_tokens`
    (llama.cpp's prompt-cache hits). A key is absent when the server does not
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
    counters = {key: _first(series, _sum, *names) for key, names in _SUMMED_COUNTERS}
    counters[figures.COMPUTED_PROMPT_TOKENS.key] = _labelled_sum(
        series, _BY_SOURCE, "source", "local_compute"
    )
    counters[figures.OFFLOAD_LOAD_BYTES.key] = _offload_bytes(series, "load", "_to_GPU")
    counters[figures.OFFLOAD_STORE_BYTES.key] = _offload_bytes(series, "store", "GPU_to_")
    counters.update(_sglang_cached(series))
    counters.update(_llamacpp_prompt_tokens(series))
    gauges = {key: _first(series, _sum, *names) for key, names in _SUMMED_GAUGES}
    gauges.update({key: _first(series, _mean, *names) for key, names in _MEAN_GAUGES})
    gauges[figures.GPU_CAPACITY_TOKENS.key] = _gpu_capacity(series)
    gauges[KV_BLOCK_SIZE] = _block_size(series)
    return ServerSample(counters=_known(counters), gauges=_known(gauges))


def _known(values: Mapping[str, float | None]) -> dict[str, float]:
    return {key: value for key, value in values.items() if value is not None}


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
        raise MetricsFormatError(one_line(str(exc))) from exc
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


def _sglang_cached(series: Series) -> dict[str, float | None]:
    """SGLang's cached prompt tokens split into GPU radix cache and HiCache (host, storage) hits.

    Labelled children only appear after their first hit, so the GPU count is 0 (not missing)
    whenever SGLang's token counters are there at all.
    """
    if "sglang:prompt_tokens" not in series:
        return {}
    device = 0.0
    offload: float | None = None
    for labels, value in series.get(_SGLANG_CACHED, []):
        if labels.get("cache_source", "total").startswith(_SGLANG_OFFLOAD_SOURCES):
            offload = (offload or 0.0) + value
        else:
            device += value
    return {SGLANG_DEVICE: device, SGLANG_OFFLOAD: offload}


def _llamacpp_prompt_tokens(series: Series) -> dict[str, float | None]:
    """llama.cpp counts the prompt tokens it computed and those it reused from its prompt cache
    apart; together they are every prompt token, and the reused ones are the cache's hits."""
    computed = _first(series, _sum, _LLAMACPP_COMPUTED)
    if computed is None:
        return {}
    cached = _first(series, _sum, _LLAMACPP_CACHED) or 0.0
    return {
        figures.PROMPT_TOKENS.key: computed + cached,
        figures.COMPUTED_PROMPT_TOKENS.key: computed,
        LLAMACPP_CACHED: cached,
    }


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


def _block_size(series: Series) -> float | None:
    """vLLM's KV block size (`cache_config_info`): a prefix cache holds only whole blocks."""
    sizes = [_int(labels.get("block_size")) for labels, _ in series.get(_CACHE_CONFIG, [])]
    known = [size for size in sizes if size]
    return float(known[0]) if known else None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
