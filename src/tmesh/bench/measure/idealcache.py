"""What a perfect prefix cache would have served: an LRU cache of the server's GPU capacity and an
infinite one, replayed over the request stream the server saw.

A server's hit rate alone does not say whether it did well: a workload whose reuse distance
exceeds any cache scores zero everywhere. The same stream through an ideal LRU cache of the
server's capacity says how much reuse was there to take, and an infinite cache how much there was
at all; the server's measured rate divided by the LRU's is its reuse efficiency (above 1, an
offload tier added capacity).

A request is a sequence of segments, each a key and a number of tokens; equal keys mean equal
tokens, and a segment is reachable only through the segments before it (a prefix cache). A hit is
the tokens of the longest run of leading segments the cache holds, at most the prompt less one
token (a server computes at least the last token to produce the first output), rounded down to
whole server blocks (only full blocks are cached). After the lookup the request's segments are
inserted last to first, so its first segments are the most recent: servers free a request's
blocks from its end, which keeps shared prefixes alive the longest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from tmesh.bench.measure.prometheus import KV_BLOCK_SIZE, ServerSample
from tmesh.bench.measure.stats import Distribution
from tmesh.results.catalogue import server as figures
from tmesh.results.records import RequestRecord

Segment = tuple[Hashable, int]
"""A run of tokens: a key (equal keys, equal tokens) and its length in tokens; the key None marks
tokens no other request shares (a question, say), which take room but can never be hit."""
Label = Literal["new", "resident", "evicted"]
"""A request's prediction: nothing of it was seen before (`new`), an LRU cache of the GPU's
capacity still holds all the infinite cache would (`resident`), or it lost some (`evicted`)."""
LABELS: tuple[Label, ...] = ("resident", "evicted", "new")


class PrefixCache:
    """An LRU prefix cache of `capacity` tokens (None: infinite) over segment keys."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.tokens = 0
        self._held: OrderedDict[Hashable, int] = OrderedDict()

    def visit(self, segments: Sequence[Segment]) -> int:
        """The tokens of the leading segments held, then the request's segments inserted."""
        held = self._held
        hit = 0
        for key, tokens in segments:
            if key is None or key not in held:
                break
            hit += tokens
        for key, tokens in reversed(segments):
            if key in held:
                held.move_to_end(key)
            elif key is not None or self.capacity is not None:
                held[object() if key is None else key] = tokens
                self.tokens += tokens
                self._evict()
        return hit

    def _evict(self) -> None:
        if self.capacity is None:
            return
        held = self._held
        while self.tokens > self.capacity and held:
            _, tokens = held.popitem(last=False)
            self.tokens -= tokens


@dataclass(frozen=True)
class Prediction:
    """Hit tokens an LRU cache of the GPU's capacity (None: capacity unknown) and an infinite
    cache would give one request."""

    prompt_tokens: int
    lru: int | None
    infinite: int

    @property
    def label(self) -> Label | None:
        """None when the capacity is unknown and some of the request was seen before."""
        if self.infinite == 0:
            return "new"
        if self.lru is None:
            return None
        return "resident" if self.lru >= self.infinite else "evicted"


class IdealCache:
    """The LRU cache of the server's capacity and the infinite cache, visited together."""

    def __init__(self, capacity: int | None, block_size: int = 1) -> None:
        self.block_size = max(1, block_size)
        self._lru = PrefixCache(capacity) if capacity is not None else None
        self._infinite = PrefixCache(None)

    def visit(self, segments: Sequence[Segment], prompt_tokens: int) -> Prediction:
        lru = self._lru.visit(segments) if self._lru is not None else None
        infinite = self._infinite.visit(segments)
        return Prediction(
            prompt_tokens,
            None if lru is None else self._usable(lru, prompt_tokens),
            self._usable(infinite, prompt_tokens),
        )

    def _usable(self, hit: int, prompt_tokens: int) -> int:
        """Whole blocks, leaving at least the last prompt token to compute."""
        block = self.block_size
        return max(0, min(hit, prompt_tokens - 1)) // block * block


class Predictor:
    """Predictions by plan index, simulated lazily in plan order as records ask for them.

    Records finish out of order (by up to the number in flight) and a run may stop anywhere, so
    the stream is simulated up to the highest index asked for and the predictions not yet asked
    for are kept until they are.
    """

    def __init__(
        self, requests: Iterator[tuple[int, Sequence[Segment], int]], cache: IdealCache
    ) -> None:
        self._requests = requests
        self._cache = cache
        self._waiting: dict[int, Prediction] = {}
        self._next = 0

    def predict(self, record: RequestRecord) -> Prediction | None:
        """The prediction of the request of `record`'s plan index (None once given, or past the
        end of the stream)."""
        index = record.index
        while index >= self._next:
            try:
                number, segments, prompt_tokens = next(self._requests)
            except StopIteration:
                return None
            self._waiting[number] = self._cache.visit(segments, prompt_tokens)
            self._next = number + 1
        return self._waiting.pop(index, None)


class SessionPredictor:
    """Predictions for the turns of conversations, simulated in the order turns finish.

    A turn's prompt is the system prompt every session shares, then its session's earlier turns
    (each the user's text and the answer, as the server counted them), then its own new text.
    A session's next turn is sent only once its last one was answered, so the order turns finish
    is the order the cache sees them, but for turns of other sessions that overlap. Set-up's
    probe requests sent the system prompt before the run, so the caches start with it.
    """

    def __init__(self, cache: IdealCache, system_tokens: int, turns: int) -> None:
        self._cache = cache
        self._system: list[Segment] = [("tmesh-system-prompt", system_tokens)]
        self._turns = turns
        self._history: dict[int, list[Segment]] = {}
        cache.visit(self._system, system_tokens + 1)

    def predict(self, record: RequestRecord) -> Prediction | None:
        if record.session is None or record.turn is None:
            return None
        history = self._history.pop(record.session, [])
        if not record.ok:
            return None
        shared = [*self._system, *history]
        prompt = record.prompt_tokens
        fresh = prompt - sum(tokens for _, tokens in shared)
        # The turn's text and its answer: what the session's next turn sends again.
        turn = ((record.session, record.turn), fresh + record.completion_tokens)
        prediction = self._cache.visit([*shared, turn], prompt)
        if record.turn < self._turns:
            self._history[record.session] = [*history, turn]
        return prediction


class ReuseScore:
    """Hit tokens of the ideal caches over the requests that succeeded, and TTFT per label."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.lru_tokens: int | None = 0
        self.infinite_tokens = 0
        self.ttft = {label: Distribution.latency() for label in LABELS}

    def add(self, prediction: Prediction, record: RequestRecord) -> None:
        if not record.ok:
            return
        self.prompt_tokens += prediction.prompt_tokens
        self.infinite_tokens += prediction.infinite
        if prediction.lru is None or self.lru_tokens is None:
            self.lru_tokens = None
        else:
            self.lru_tokens += prediction.lru
        label, ttft = prediction.label, record.ttft
        if label is not None and ttft is not None:
            self.ttft[label].add(ttft)

    @property
    def lru_rate(self) -> float | None:
        if self.lru_tokens is None or not self.prompt_tokens:
            return None
        return self.lru_tokens / self.prompt_tokens

    @property
    def infinite_rate(self) -> float | None:
        return self.infinite_tokens / self.prompt_tokens if self.prompt_tokens else None


def reuse_efficiency(measured: float | None, lru: float | None) -> float | None:
    """Measured hit rate / the LRU's: None when either is unknown or the LRU would hit nothing
    (no reuse was within its reach, so there is nothing to be efficient at)."""
    if measured is None or lru is None or lru <= 0:
        return None
    return measured / lru


def cache_geometry(sample: ServerSample | None, cache_tokens: int | None) -> tuple[int | None, int]:
    """The ideal LRU cache's size in tokens (`--cache-tokens`, else the GPU KV capacity the
    server reports, else unknown) and the server's block size (1 when it does not say)."""
    gauges = sample.gauges if sample is not None else {}
    reported = gauges.get(figures.GPU_CAPACITY_TOKENS.key)
    capacity = cache_tokens or (int(reported) if reported else None)
    return capacity, int(gauges.get(KV_BLOCK_SIZE) or 1)


def reuse_figures(
    score: ReuseScore, server: dict[str, float] | None, capacity: int | None
) -> dict[str, float]:
    """The ideal-cache figures of a run for `RunSummary.server`: the measured, LRU and infinite
    hit rates, the reuse efficiency, the LRU's size and the median TTFT per prediction."""
    measured = measured_hit_rate(server or {})
    lru = score.lru_rate
    found: dict[str, float | None] = {
        figures.MEASURED_HIT_RATE.key: measured,
        figures.IDEAL_LRU_HIT_RATE.key: lru,
        figures.IDEAL_INFINITE_HIT_RATE.key: score.infinite_rate,
        figures.REUSE_EFFICIENCY.key: reuse_efficiency(measured, lru),
        figures.IDEAL_CACHE_TOKENS.key: capacity,
    }
    medians = (figures.TTFT_RESIDENT, figures.TTFT_EVICTED, figures.TTFT_NEW)
    for metric, label in zip(medians, LABELS, strict=True):
        found[metric.key] = score.ttft[label].to_stats().p50
    return {key: float(value) for key, value in found.items() if value is not None}


def measured_hit_rate(server: dict[str, float]) -> float | None:
    """Prompt tokens served from the GPU cache or the offload tier / tokens looked up."""
    queries = server.get(figures.GPU_QUERY_TOKENS.key)
    if not queries:
        return None
    hits = server.get(figures.GPU_HIT_TOKENS.key, 0.0)
    return (hits + server.get(figures.EXTERNAL_HIT_TOKENS.key, 0.0)) / queries
