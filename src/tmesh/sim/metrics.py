"""Prometheus metrics of the simulated engine, with vLLM V1's names, labels and semantics.

Names follow vLLM V1's `vllm/v1/metrics/loggers.py`: counters are declared without
`_total` and prometheus_client adds it on the wire, every series carries `model_name` and
`engine="0"`. Gauges are read lazily at scrape time, so the engine's step loop pays nothing for
them. Every counter is mirrored in a plain dict, `snapshot()`, the engine's own truth that tests
compare with what a scraper parses from `/metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tmesh.sim.config import EngineConfig

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
FINISHED_REASONS = ("stop", "length", "abort")
PROMPT_SOURCES = ("local_compute", "local_cache_hit", "external_kv_transfer")
_LABELS = ("model_name", "engine")
_TTFT_COUNT = "vllm:time_to_first_token_seconds_count"
_TTFT_SUM = "vllm:time_to_first_token_seconds_sum"


class EngineMetrics:
    """The engine's metric objects in their own registry (`registry`) plus a counter mirror."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._labels = {"model_name": cfg.model, "engine": "0"}
        self._totals: dict[str, float] = {}
        self._counters: dict[str, Counter] = {}
        self._children: dict[str, Counter] = {}
        self.offload = cfg.num_cpu_blocks > 0

        self.running = self._gauge("vllm:num_requests_running", "Requests in the running batch.")
        self.waiting = self._gauge(
            "vllm:num_requests_waiting", "Requests waiting, including those loading KV from CPU."
        )
        self.kv_usage = self._gauge(
            "vllm:kv_cache_usage_perc", "Fraction of GPU KV blocks pinned by live requests."
        )
        self._queries = self._counter("vllm:prefix_cache_queries", "Tokens looked up locally.")
        self._hits = self._counter("vllm:prefix_cache_hits", "Local prefix-cache hit tokens.")
        self._ext_queries = self._counter(
            "vllm:external_prefix_cache_queries", "Tokens looked up in the KV connector."
        )
        self._ext_hits = self._counter(
            "vllm:external_prefix_cache_hits", "Tokens supplied by the KV connector."
        )
        self._prompt = self._counter("vllm:prompt_tokens", "Prefill tokens processed.")
        self._prompt_cached = self._counter(
            "vllm:prompt_tokens_cached", "Prompt tokens served from local or external cache."
        )
        self._prompt_recomputed = self._counter(
            "vllm:prompt_tokens_recomputed", "Cached prompt tokens recomputed for logits."
        )
        self._by_source = self._counter(
            "vllm:prompt_tokens_by_source", "Prompt tokens by origin of their KV.", ("source",)
        )
        self._generation = self._counter("vllm:generation_tokens", "Generation tokens processed.")
        self._preemptions = self._counter("vllm:num_preemptions", "Cumulative preemptions.")
        self._success = self._counter(
            "vllm:request_success", "Finished requests.", ("finished_reason",)
        )
        for reason in FINISHED_REASONS:
            self._inc(self._success, 0, finished_reason=reason)
        for source in PROMPT_SOURCES:
            self._inc(self._by_source, 0, source=source)
        self._ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Time to first token, from arrival.",
            _LABELS,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        ).labels(**self._labels)
        self._e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency, from arrival.",
            _LABELS,
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**self._labels)
        info = Gauge(
            "vllm:cache_config_info",
            "Information of the KV cache configuration.",
            (*_LABELS, "block_size", "num_gpu_blocks", "num_cpu_blocks", "cache_dtype",
             "enable_prefix_caching", "gpu_memory_utilization"),
            registry=self.registry,
        )  # fmt: skip
        info.labels(
            **self._labels,
            block_size=str(cfg.block_size),
            num_gpu_blocks=str(cfg.num_gpu_blocks),
            num_cpu_blocks=str(cfg.num_cpu_blocks),
            cache_dtype="auto",
            enable_prefix_caching="True",
            gpu_memory_utilization="0.9",
        ).set(1)
        if self.offload:
            self._load_bytes = self._counter("vllm:kv_offload_load_bytes", "Bytes CPU to GPU.")
            self._load_time = self._counter("vllm:kv_offload_load_time", "Seconds CPU to GPU.")
            self._store_bytes = self._counter("vllm:kv_offload_store_bytes", "Bytes GPU to CPU.")
            self._store_time = self._counter("vllm:kv_offload_store_time", "Seconds GPU to CPU.")
            self.cpu_usage = self._gauge(
                "vllm:kv_offload_cpu_cache_usage_perc", "Fraction of the CPU KV tier in use."
            )

    def _gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, _LABELS, registry=self.registry).labels(**self._labels)

    def _counter(self, name: str, doc: str, extra: tuple[str, ...] = ()) -> str:
        self._counters[name] = Counter(name, doc, (*_LABELS, *extra), registry=self.registry)
        if not extra:
            self._inc(name, 0)
        return name

    def _inc(self, name: str, amount: float, **labels: str) -> None:
        key = name + "_total" + "".join(f'{{{k}="{v}"}}' for k, v in labels.items())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._counters[name].labels(**self._labels, **labels)
        self._totals[key] = self._totals.get(key, 0) + amount
        child.inc(amount)

    def bind_gauges(
        self,
        running: Callable[[], float],
        waiting: Callable[[], float],
        kv_usage: Callable[[], float],
        cpu_usage: Callable[[], float] | None,
    ) -> None:
        """Gauges read engine state when scraped instead of being set every step."""
        self.running.set_function(running)
        self.waiting.set_function(waiting)
        self.kv_usage.set_function(kv_usage)
        if self.offload and cpu_usage is not None:
            self.cpu_usage.set_function(cpu_usage)

    def record_lookup(self, prompt_tokens: int, local_hit: int, external_hit: int) -> None:
        """Scheduler stats of a newly admitted request (never of a preempted one, like vLLM)."""
        self._inc(self._queries, prompt_tokens)
        self._inc(self._hits, local_hit)
        if self.offload:
            self._inc(self._ext_queries, prompt_tokens - local_hit)
            self._inc(self._ext_hits, external_hit)

    def record_first_token(
        self, ttft: float, prompt_tokens: int, local_hit: int, external_hit: int
    ) -> None:
        """Prompt-token stats at the end of prefill, as vLLM's `PromptTokenStats`.

        When all but the last token were cached (the last-token rule forced it), vLLM counts that
        token as recomputed *and* as a local cache hit, so the sources then sum to prompt + 1.
        """
        cached = local_hit + external_hit
        recomputed = 1 if cached + 1 == prompt_tokens else 0
        self._ttft.observe(ttft)
        self._inc(self._prompt, prompt_tokens)
        self._inc(self._prompt_cached, cached)
        self._inc(self._prompt_recomputed, recomputed)
        self._inc(self._by_source, prompt_tokens - cached, source="local_compute")
        self._inc(self._by_source, local_hit + recomputed, source="local_cache_hit")
        self._inc(self._by_source, external_hit, source="external_kv_transfer")
        totals = self._totals
        totals[_TTFT_COUNT] = totals.get(_TTFT_COUNT, 0) + 1
        totals[_TTFT_SUM] = totals.get(_TTFT_SUM, 0.0) + ttft

    def record_generation(self, tokens: int) -> None:
        self._inc(self._generation, tokens)

    def record_finish(self, reason: str, e2e: float) -> None:
        self._inc(self._success, 1, finished_reason=reason)
        self._e2e.observe(e2e)

    def record_abort(self) -> None:
        """A request that left before finishing (client gone, engine stopped)."""
        self._inc(self._success, 1, finished_reason="abort")

    def record_preemption(self) -> None:
        self._inc(self._preemptions, 1)

    def record_load(self, num_bytes: int, seconds: float) -> None:
        self._inc(self._load_bytes, num_bytes)
        self._inc(self._load_time, seconds)

    def record_store(self, num_bytes: int, seconds: float) -> None:
        self._inc(self._store_bytes, num_bytes)
        self._inc(self._store_time, seconds)

    def snapshot(self) -> dict[str, float]:
        """Counter totals keyed as exposed (`vllm:num_preemptions_total`), labels inline."""
        return dict(self._totals)

    def value(self, key: str) -> float:
        """One counter total by its exposed key (0 when never incremented)."""
        return self._totals.get(key, 0)
