"""The server figures of a run, declared once: the keys of `IntervalSnapshot.server` and
`RunSummary.server`, what each means, and whether the server reported it or tmesh derived it.

`bench.measure.servermetrics` produces the reported ones from the server's `/metrics` (counters
as differences over an interval or the run, gauges at the scrape); `bench.measure.verdict` adds
the derived ones, which need what only tmesh knows (the workload, the client's timings). Keys are
stable: they are written to `intervals.jsonl` and `summary.json`.

The offload tier is what sits behind the GPU prefix cache (a KV connector such as LMCache or
vLLM's offloading connector, or SGLang's HiCache); the console calls it "external".

`LINES` groups them into the titled lines the console prints (one line per group in the 5-second
block, one row per group in the summary, with its explanation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tmesh.results.catalogue.units import BYTES, COUNT, FRACTION, RATIO, SECONDS, TOKENS

Source = Literal["server", "tmesh"]
SERVER: Source = "server"
"""Read from the server's own counters and gauges (a hit rate divides two of its counters)."""
TMESH: Source = "tmesh"
"""Derived by tmesh from the workload, the client's timings and the server's counters."""
SOURCES: tuple[tuple[Source, str], ...] = (
    (SERVER, "reported by the server: its counters over the run, its gauges at the last scrape"),
    (TMESH, "derived by tmesh from the workload, the client's timings and the server's counters"),
)
"""Each source with the words the console and the report introduce its figures with."""


@dataclass(frozen=True)
class ServerMetric:
    key: str
    label: str
    unit: str
    source: Source
    definition: str


def _reported(key: str, label: str, unit: str, definition: str) -> ServerMetric:
    return ServerMetric(key, label, unit, SERVER, definition)


def _derived(key: str, label: str, unit: str, definition: str) -> ServerMetric:
    return ServerMetric(key, label, unit, TMESH, definition)


GPU_HIT_RATE = _reported(
    "gpu_hit_rate", "GPU prefix-cache hit rate", FRACTION,
    "prompt tokens found in the GPU prefix cache / tokens looked up in it",
)  # fmt: skip
EXTERNAL_HIT_RATE = _reported(
    "external_hit_rate", "offload-tier hit rate", FRACTION,
    "prompt tokens the offload tier supplied / tokens looked up there (the GPU's misses)",
)  # fmt: skip
LMCACHE_HIT_RATE = _reported(
    "lmcache_hit_rate", "LMCache hit rate", FRACTION, "LMCache's hit tokens / requested tokens"
)
SGLANG_CACHE_HIT_RATE = _reported(
    "sglang_cache_hit_rate", "SGLang cache hit rate", FRACTION,
    "SGLang's own cache hit rate gauge, mean over engines",
)  # fmt: skip
KV_USAGE = _reported(
    "kv_usage_perc", "GPU KV cache in use", FRACTION,
    "share of the GPU KV cache in use, mean over engines",
)  # fmt: skip
RUNNING = _reported("running", "requests running", COUNT, "requests running at the scrape")
WAITING = _reported("waiting", "requests waiting", COUNT, "requests queued at the scrape")
PREEMPTIONS = _reported(
    "preemptions", "preemptions", COUNT,
    "requests preempted (vLLM) or retracted (SGLang) to free KV cache",
)  # fmt: skip
PROMPT_TOKENS = _reported("prompt_tokens", "prompt tokens", TOKENS, "prompt tokens processed")
GPU_HIT_TOKENS = _reported(
    "gpu_hit_tokens", "GPU prefix-cache hit tokens", TOKENS,
    "prompt tokens found in the GPU prefix cache",
)  # fmt: skip
EXTERNAL_HIT_TOKENS = _reported(
    "external_hit_tokens", "offload-tier hit tokens", TOKENS,
    "prompt tokens loaded from the offload tier",
)  # fmt: skip
OFFLOAD_LOAD_BYTES = _reported(
    "offload_load_bytes", "offload bytes loaded", BYTES,
    "KV bytes vLLM's offloading connector loaded into the GPU",
)  # fmt: skip
GPU_QUERY_TOKENS = _reported(
    "gpu_query_tokens", "GPU prefix-cache lookups", TOKENS,
    "prompt tokens looked up in the GPU prefix cache",
)  # fmt: skip
EXTERNAL_QUERY_TOKENS = _reported(
    "external_query_tokens", "offload-tier lookups", TOKENS,
    "prompt tokens looked up in the offload tier",
)  # fmt: skip
COMPUTED_PROMPT_TOKENS = _reported(
    "computed_prompt_tokens", "prompt tokens computed", TOKENS,
    "prompt tokens prefilled, not taken from a cache",
)  # fmt: skip
GENERATION_TOKENS = _reported("generation_tokens", "generated tokens", TOKENS, "tokens generated")
OFFLOAD_STORE_BYTES = _reported(
    "offload_store_bytes", "offload bytes stored", BYTES,
    "KV bytes vLLM's offloading connector copied out of the GPU",
)  # fmt: skip
LMCACHE_STORED_TOKENS = _reported(
    "lmcache_stored_tokens", "LMCache stored tokens", TOKENS, "tokens LMCache stored"
)
GPU_CAPACITY_TOKENS = _reported(
    "gpu_capacity_tokens", "GPU KV capacity", TOKENS,
    "tokens the GPU KV cache holds, summed over engines",
)  # fmt: skip
LMCACHE_LOCAL_CACHE_BYTES = _reported(
    "lmcache_local_cache_bytes", "LMCache local cache", BYTES, "bytes in LMCache's local cache"
)
WORKING_SET_TOKENS = _derived(
    "working_set_tokens", "working set", TOKENS,
    "contexts x input length: the prompt tokens revisits can reuse",
)  # fmt: skip
REVISIT_GPU_HIT_RATE = _derived(
    "revisit_gpu_hit_rate", "GPU prefix-cache hit rate on revisits", FRACTION,
    "GPU prefix-cache hit tokens / its lookups less the first visits' prompt tokens",
)  # fmt: skip
REVISIT_EXTERNAL_HIT_RATE = _derived(
    "revisit_external_hit_rate", "offload-tier hit rate on revisits", FRACTION,
    "offload-tier hit tokens / its lookups less the first visits' prompt tokens",
)  # fmt: skip
WARM_COLD_TTFT_RATIO = _derived(
    "warm_cold_ttft_ratio", "first-visit / revisit TTFT", RATIO,
    "median first-visit TTFT / median revisit TTFT, as the client measured them",
)  # fmt: skip
MEASURED_HIT_RATE = _derived(
    "measured_hit_rate", "measured prefix-cache hit rate", FRACTION,
    "prompt tokens the server took from any cache tier (GPU or offload) / tokens looked up",
)  # fmt: skip
IDEAL_LRU_HIT_RATE = _derived(
    "ideal_lru_hit_rate", "ideal LRU hit rate at GPU capacity", FRACTION,
    "hit rate of an ideal LRU prefix cache of the GPU KV capacity over the same requests",
)  # fmt: skip
IDEAL_INFINITE_HIT_RATE = _derived(
    "ideal_infinite_hit_rate", "infinite-cache hit rate", FRACTION,
    "hit rate of a prefix cache that never evicts over the same requests: all the reuse there was",
)  # fmt: skip
REUSE_EFFICIENCY = _derived(
    "reuse_efficiency", "reuse efficiency", RATIO,
    "measured hit rate / ideal LRU hit rate: the share of the reuse within the GPU's reach that "
    "the stack got (above 1: an offload tier added capacity)",
)  # fmt: skip
IDEAL_CACHE_TOKENS = _derived(
    "ideal_cache_tokens", "ideal LRU cache size", TOKENS,
    "capacity of the ideal LRU cache: the server's GPU KV capacity, or --cache-tokens",
)  # fmt: skip
TTFT_RESIDENT = _derived(
    "ttft_p50_resident", "TTFT p50, GPU-resident", SECONDS,
    "median TTFT of requests whose shared prefix the ideal LRU cache still held",
)  # fmt: skip
TTFT_EVICTED = _derived(
    "ttft_p50_evicted", "TTFT p50, evicted", SECONDS,
    "median TTFT of requests whose shared prefix the ideal LRU cache had evicted",
)  # fmt: skip
TTFT_NEW = _derived(
    "ttft_p50_new", "TTFT p50, new", SECONDS,
    "median TTFT of requests sharing nothing with earlier ones",
)  # fmt: skip

SERVER_METRICS = (
    GPU_HIT_RATE, EXTERNAL_HIT_RATE, LMCACHE_HIT_RATE, SGLANG_CACHE_HIT_RATE, KV_USAGE, RUNNING,
    WAITING, PREEMPTIONS, PROMPT_TOKENS, GPU_HIT_TOKENS, EXTERNAL_HIT_TOKENS, OFFLOAD_LOAD_BYTES,
    GPU_QUERY_TOKENS, EXTERNAL_QUERY_TOKENS, COMPUTED_PROMPT_TOKENS, GENERATION_TOKENS,
    OFFLOAD_STORE_BYTES, LMCACHE_STORED_TOKENS, GPU_CAPACITY_TOKENS, LMCACHE_LOCAL_CACHE_BYTES,
    WORKING_SET_TOKENS, REVISIT_GPU_HIT_RATE, REVISIT_EXTERNAL_HIT_RATE, WARM_COLD_TTFT_RATIO,
    MEASURED_HIT_RATE, IDEAL_LRU_HIT_RATE, IDEAL_INFINITE_HIT_RATE, REUSE_EFFICIENCY,
    IDEAL_CACHE_TOKENS, TTFT_RESIDENT, TTFT_EVICTED, TTFT_NEW,
)  # fmt: skip
"""Every server figure, reported ones first; `key` is unique."""
SERVER_BY_KEY = {metric.key: metric for metric in SERVER_METRICS}


@dataclass(frozen=True)
class ServerLine:
    """A titled group of figures: `Server Prompt Tokens: total 1600000 · GPU hits 200000`.

    Each member is shown as its short name then its value; `explanation` says what the line
    means (a one-figure line defaults to the figure's definition).
    """

    title: str
    members: tuple[tuple[ServerMetric, str], ...]
    explanation: str = ""

    @property
    def source(self) -> Source:
        return self.members[0][0].source

    @property
    def meaning(self) -> str:
        return self.explanation or self.members[0][0].definition


def _line(title: str, *metrics: ServerMetric) -> ServerLine:
    return ServerLine(title, tuple((metric, "") for metric in metrics))


LINES = (
    ServerLine(
        "Server Prefix Cache Hit Rate",
        (
            (GPU_HIT_RATE, "GPU"),
            (EXTERNAL_HIT_RATE, "external"),
            (SGLANG_CACHE_HIT_RATE, "SGLang"),
            (LMCACHE_HIT_RATE, "LMCache"),
        ),
        "share of looked-up prompt tokens each cache held; the offload tier sees only the "
        "GPU's misses",
    ),
    ServerLine(
        "Server Prompt Tokens",
        (
            (PROMPT_TOKENS, "total"),
            (GPU_HIT_TOKENS, "GPU hits"),
            (EXTERNAL_HIT_TOKENS, "external hits"),
        ),
        "prompt tokens processed; of them, GPU prefix-cache hits and offload-tier hits",
    ),
    ServerLine(
        "Server Prompt Tokens Looked Up",
        ((GPU_QUERY_TOKENS, "GPU"), (EXTERNAL_QUERY_TOKENS, "external")),
        "prompt tokens looked up in the GPU prefix cache and in the offload tier",
    ),
    _line("Server Prompt Tokens Computed", COMPUTED_PROMPT_TOKENS),
    _line("Server Generated Tokens", GENERATION_TOKENS),
    _line("Server KV Cache Usage", KV_USAGE),
    _line("Server GPU KV Capacity (tokens)", GPU_CAPACITY_TOKENS),
    ServerLine(
        "Server Requests",
        ((RUNNING, "running"), (WAITING, "waiting")),
        "requests running and queued at the scrape",
    ),
    _line("Server Preemptions", PREEMPTIONS),
    _line("Server Offload Loaded", OFFLOAD_LOAD_BYTES),
    _line("Server Offload Stored", OFFLOAD_STORE_BYTES),
    _line("Server LMCache Stored Tokens", LMCACHE_STORED_TOKENS),
    _line("Server LMCache Local Cache", LMCACHE_LOCAL_CACHE_BYTES),
    _line("Working Set (tokens)", WORKING_SET_TOKENS),
    ServerLine(
        "Revisit Prefix Cache Hit Rate",
        ((REVISIT_GPU_HIT_RATE, "GPU"), (REVISIT_EXTERNAL_HIT_RATE, "external")),
        "share of the revisits' lookups each tier held (first visits, which miss by "
        "construction, left out)",
    ),
    _line("TTFT First Visit / Revisit", WARM_COLD_TTFT_RATIO),
    ServerLine(
        "Prefix Cache Hit Rate vs Ideal",
        (
            (MEASURED_HIT_RATE, "measured"),
            (IDEAL_LRU_HIT_RATE, "LRU at GPU capacity"),
            (IDEAL_INFINITE_HIT_RATE, "infinite"),
        ),
        "share of prompt tokens served from cache: as the server measured it, and as an ideal "
        "LRU cache of its GPU KV capacity and a cache that never evicts would have served the "
        "same requests",
    ),
    _line("Reuse Efficiency (measured / LRU)", REUSE_EFFICIENCY),
    _line("Ideal LRU Cache Size (tokens)", IDEAL_CACHE_TOKENS),
    ServerLine(
        "TTFT p50 by Ideal-Cache Prediction",
        ((TTFT_RESIDENT, "GPU-resident"), (TTFT_EVICTED, "evicted"), (TTFT_NEW, "new")),
        "median TTFT of the requests an ideal LRU cache of the GPU's size still held, had "
        "evicted, or had never seen",
    ),
)
"""Every figure of `SERVER_METRICS` on exactly one line, the server's lines first."""
