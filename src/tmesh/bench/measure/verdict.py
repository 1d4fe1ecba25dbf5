"""Did the run really evict and re-read? One plain-language line for the end of a run.

The workload exists to overflow the GPU KV cache so that revisits must come from an offload tier
(or be recomputed). Three facts settle what happened: the working set against the GPU capacity
the server reports, the server's hit rates while revisiting, and how much faster revisits were
than first visits as the client measured them. The hit rates must describe revisits: first
visits are misses by construction (every context starts with its own tokens), so their lookups
are taken out of the server's counters before dividing, or a short run would look half-missed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tmesh.bench.measure.prometheus import ServerSample
from tmesh.bench.measure.servermetrics import ServerMetricsScraper, run_view
from tmesh.bench.measure.sessions import survival_verdict
from tmesh.results.catalogue.server import (
    EXTERNAL_HIT_RATE,
    EXTERNAL_HIT_TOKENS,
    EXTERNAL_QUERY_TOKENS,
    GPU_CAPACITY_TOKENS,
    GPU_HIT_RATE,
    GPU_HIT_TOKENS,
    GPU_QUERY_TOKENS,
    REVISIT_EXTERNAL_HIT_RATE,
    REVISIT_GPU_HIT_RATE,
    WARM_COLD_TTFT_RATIO,
    WORKING_SET_TOKENS,
    ServerMetric,
)
from tmesh.results.records import IntervalSnapshot, MetricStats, RunSummary, WorkloadSpec

NOT_ENOUGH = "not enough revisits yet to judge (run past the first rotation)"
HIT = 0.5  # revisits are "served from cache" when at least half of their tokens were cached
FASTER = 1.5  # revisits "are faster" when their TTFT is at least this many times lower


@dataclass(frozen=True)
class Verdict:
    """The facts behind the conclusion, for `summary.json` and the report.

    `warm_cold_ttft_ratio` is first-visit TTFT divided by revisit TTFT (medians): 11.8 means
    revisits got their first token 11.8 times sooner. `working_set_tokens` counts the contexts'
    prompts, the prefix a revisit can reuse.
    """

    working_set_tokens: int
    working_set_bytes: int | None
    gpu_capacity_tokens: int | None
    fits_gpu: bool | None
    revisit_gpu_hit_rate: float | None
    revisit_external_hit_rate: float | None
    warm_cold_ttft_ratio: float | None
    conclusion: str


def summarize_cache(
    summary: RunSummary,
    spec: WorkloadSpec,
    scraper: ServerMetricsScraper | None,
    first: ServerSample | None,
    last: ServerSample | None,
) -> Verdict | None:
    """Fill `summary.server` (the run's server view plus the verdict's facts) and `summary.verdict`.

    A sessions run has no contexts to revisit: its verdict is its cache-survival curve, and no
    `Verdict` facts are returned.

    `first`/`last` are the scrapes before the load and the last good one; without them the
    verdict rests on the client's TTFT alone. If the scraper's last attempt failed, the server
    figures stop at `last` and the conclusion says so.
    """
    server = run_view(first, last) if first is not None and last is not None else None
    if summary.sessions is not None:
        summary.server = server
        summary.verdict = survival_verdict(summary.sessions)
        return None
    verdict = _run_verdict(summary.cold_ttft, summary.warm_ttft, spec, server)
    if server is not None:
        summary.server = {**server, **_facts_as_numbers(verdict)}
    summary.verdict = verdict.conclusion
    if scraper is not None and scraper.unavailable_reason and server is not None:
        summary.verdict += f" (server metrics stopped early: {scraper.unavailable_reason})"
    return verdict


def verdict_so_far(
    snap: IntervalSnapshot,
    spec: WorkloadSpec,
    first: ServerSample | None,
    last: ServerSample | None,
) -> str:
    """The conclusion the summary would reach if the run ended at this interval."""
    if snap.sessions is not None:
        return survival_verdict(snap.sessions)
    server = run_view(first, last) if first is not None and last is not None else None
    return _run_verdict(snap.cold_ttft, snap.warm_ttft, spec, server).conclusion


def _run_verdict(
    cold: MetricStats, warm: MetricStats, spec: WorkloadSpec, server: Mapping[str, float] | None
) -> Verdict:
    """A verdict on a run from its start: every first visit so far is inside the server view."""
    return cache_verdict(
        cold, warm, spec, server, first_visit_tokens=cold.count * spec.input_length
    )


def cache_verdict(
    cold_ttft: MetricStats,
    warm_ttft: MetricStats,
    spec: WorkloadSpec,
    server: Mapping[str, float] | None,
    first_visit_tokens: int = 0,
    min_revisits: int = 3,
) -> Verdict:
    """Judge from TTFT by visit and a server view (`servermetrics.run_view` shape) or None.

    `first_visit_tokens`: prompt tokens of the contexts' first visits inside the view, removed
    from its lookups so the hit rates are those of revisits (0 when the view starts after the
    first rotation).
    """
    server = server or {}
    working = spec.num_contexts * spec.input_length
    capacity = _positive_int(server.get(GPU_CAPACITY_TOKENS.key))
    ratio = _speedup(cold_ttft, warm_ttft)
    facts = _Facts(
        working=working,
        capacity=capacity,
        gpu=_revisit_rate(server, _GPU_TIER, first_visit_tokens),
        external=_revisit_rate(server, _EXTERNAL_TIER, first_visit_tokens),
        ratio=ratio,
    )
    enough = ratio is not None and warm_ttft.count >= min_revisits
    return Verdict(
        working_set_tokens=working,
        working_set_bytes=working * spec.kv_bytes_per_token if spec.kv_bytes_per_token else None,
        gpu_capacity_tokens=capacity,
        fits_gpu=working <= capacity if capacity else None,
        revisit_gpu_hit_rate=facts.gpu,
        revisit_external_hit_rate=facts.external,
        warm_cold_ttft_ratio=ratio,
        conclusion=_conclude(facts) if enough else NOT_ENOUGH,
    )


@dataclass(frozen=True)
class _Facts:
    working: int
    capacity: int | None
    gpu: float | None
    external: float | None
    ratio: float | None

    @property
    def overflow(self) -> float | None:
        return self.working / self.capacity if self.capacity else None

    @property
    def offload_share(self) -> float:
        """Part of all revisit tokens that came from the offload tier (it only sees GPU misses)."""
        return (1.0 - (self.gpu or 0.0)) * (self.external or 0.0)

    @property
    def cached_share(self) -> float:
        return (self.gpu or 0.0) + self.offload_share


def _conclude(f: _Facts) -> str:
    if f.gpu is None and f.external is None:
        return _client_only(f)
    if f.cached_share < HIT:
        return _missed(f)
    if f.offload_share >= (f.gpu or 0.0):
        return _from_offload(f)
    return _from_gpu(f)


def _from_offload(f: _Facts) -> str:
    if (f.ratio or 0.0) < FASTER:
        return (
            f"revisits hit the offload tier ({_pct(f.external)} of the tokens the GPU missed) "
            f"but {_ttft(f.ratio)}: loading them cost about as much as recomputing"
        )
    head = f"revisits are served from offload: {_ttft(f.ratio)}"
    if f.overflow is None:
        return f"{head}; the server does not report its GPU KV capacity"
    size = f"the working set ({_tokens(f.working)} tokens)"
    if f.overflow > 1.0:
        return (
            f"{head}; {size} is {_times(f.overflow)} the GPU KV capacity, "
            "so a GPU cache alone would have missed"
        )
    return (
        f"{head}; {size} fits in the GPU KV cache ({_times(f.overflow)} its capacity), "
        "so the GPU cache alone could have served them"
    )


def _from_gpu(f: _Facts) -> str:
    head = f"revisits are served from the GPU prefix cache ({_pct(f.gpu)} hit): {_ttft(f.ratio)}"
    if f.overflow is None:
        return head
    size = f"the working set ({_tokens(f.working)} tokens)"
    if f.overflow <= 1.0:
        return (
            f"{head}; {size} fits in GPU KV capacity ({_times(f.overflow)}), so this run does "
            "not exercise offloading (raise --num-contexts or --input-length)"
        )
    return f"{head} although {size} is {_times(f.overflow)} the GPU KV capacity"


def _missed(f: _Facts) -> str:
    tier = "no offload tier hit" if not f.external else f"the offload tier hit {_pct(f.external)}"
    if f.overflow is None:
        return f"revisits miss the server's caches (GPU {_pct(f.gpu)}, {tier}); {_ttft(f.ratio)}"
    if f.overflow > 1.0:
        return (
            f"revisits miss: working set is {_times(f.overflow)} GPU KV capacity and {tier}; "
            f"{_ttft(f.ratio)}"
        )
    return (
        f"revisits miss although the working set fits in GPU KV capacity "
        f"({_times(f.overflow)}), so prefix caching looks off; {_ttft(f.ratio)}"
    )


def _client_only(f: _Facts) -> str:
    if (f.ratio or 0.0) >= FASTER:
        return (
            f"revisits are served from a cache: {_ttft(f.ratio)}; the server exposes no cache "
            "metrics to say which tier"
        )
    return (
        f"revisits are not served from a cache: {_ttft(f.ratio)}; the server exposes no cache "
        "metrics to say why"
    )


_Tier = tuple[ServerMetric, ServerMetric, ServerMetric]
"""A cache tier's hit tokens, looked-up tokens and hit rate in a server view."""
_GPU_TIER: _Tier = (GPU_HIT_TOKENS, GPU_QUERY_TOKENS, GPU_HIT_RATE)
_EXTERNAL_TIER: _Tier = (EXTERNAL_HIT_TOKENS, EXTERNAL_QUERY_TOKENS, EXTERNAL_HIT_RATE)


def _revisit_rate(
    server: Mapping[str, float], tier: _Tier, first_visit_tokens: int
) -> float | None:
    """Hits over the lookups revisits made; the view's own rate when it has no token totals."""
    hit_tokens, query_tokens, hit_rate = tier
    hits, queries = server.get(hit_tokens.key), server.get(query_tokens.key)
    if hits is None or queries is None:
        return server.get(hit_rate.key)
    revisit_queries = queries - first_visit_tokens
    return min(hits / revisit_queries, 1.0) if revisit_queries > 0 else None


def _facts_as_numbers(verdict: Verdict) -> dict[str, float]:
    facts = (
        (WORKING_SET_TOKENS, verdict.working_set_tokens),
        (REVISIT_GPU_HIT_RATE, verdict.revisit_gpu_hit_rate),
        (REVISIT_EXTERNAL_HIT_RATE, verdict.revisit_external_hit_rate),
        (WARM_COLD_TTFT_RATIO, verdict.warm_cold_ttft_ratio),
    )
    return {metric.key: float(value) for metric, value in facts if value is not None}


def _speedup(cold: MetricStats, warm: MetricStats) -> float | None:
    cold_ttft, warm_ttft = _typical(cold), _typical(warm)
    if cold_ttft is None or warm_ttft is None or warm_ttft <= 0:
        return None
    return cold_ttft / warm_ttft


def _typical(stats: MetricStats) -> float | None:
    """The median, robust to a few queued requests; the mean when no median was computed."""
    if stats.count == 0:
        return None
    return stats.p50 if stats.p50 is not None else stats.mean


def _positive_int(value: float | None) -> int | None:
    return int(value) if value is not None and value > 0 else None


def _ttft(ratio: float | None) -> str:
    if ratio is not None and ratio >= FASTER:
        return f"TTFT {_times(ratio)} lower than first visits"
    return f"TTFT of revisits ≈ first visits ({_times(ratio or 0.0)})"


def _times(factor: float) -> str:
    """Two decimals near 1 (1.05x and 1.1x differ there), one above."""
    return f"{factor:.2f}x" if factor < 1.5 else f"{factor:.1f}x"


def _pct(rate: float | None) -> str:
    return f"{(rate or 0.0) * 100:.0f}%"


def _tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.2f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    return str(count)
