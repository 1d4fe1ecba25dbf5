"""The sessions of a run: TTFT by turn, the cache-survival curve by idle gap, sessions finished.

A conversation's prompt grows every turn, and between two turns it sits idle for as long as its
user thinks. Whether its KV survived that pause shows in the next turn: the share of its prompt
the server reported as cached, and its TTFT. Grouping turns by their idle gap (0-5 s, 5-30 s,
30-120 s, over 120 s by default) gives the curve of how long an idle context survives on the GPU
and in each offload tier. Turn 1 has no previous turn, so it is in the by-turn figures (cold by
construction) but on no point of the curve.

Memory is bounded: one coarse histogram pair per turn index and per gap bucket, and the start
time of each session in progress.
"""

from __future__ import annotations

import bisect
import math
from itertools import pairwise

from tmesh.bench.measure.stats import Distribution
from tmesh.results.catalogue.sessions import cached_share, gap_label
from tmesh.results.catalogue.units import FRACTION, SECONDS, console_value
from tmesh.results.records import GapStats, RequestRecord, SessionStats, TurnStats

DEFAULT_GAP_EDGES = (5.0, 30.0, 120.0)
GPU_HIT_RATE, EXTERNAL_HIT_RATE = "gpu_hit_rate", "external_hit_rate"


def parse_gap_buckets(text: str) -> tuple[float, ...]:
    """`5,30,120`: increasing positive edges in seconds; ValueError says what it must be."""
    try:
        edges = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("increasing numbers of seconds, like 5,30,120") from None
    if not edges or not all(math.isfinite(e) and e > 0 for e in edges):
        raise ValueError("positive numbers of seconds, like 5,30,120")
    if any(b <= a for a, b in pairwise(edges)):
        raise ValueError("increasing numbers of seconds, like 5,30,120")
    return edges


class _Slice:
    """Successful requests of one turn index or one gap bucket."""

    def __init__(self, throughput: bool) -> None:
        self.requests = 0
        self.ttft = Distribution.coarse_latency()
        self.prefill = Distribution.coarse_throughput() if throughput else None
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.cached_reported = 0

    def add(self, record: RequestRecord) -> None:
        self.requests += 1
        self.prompt_tokens += record.prompt_tokens
        if record.cached_tokens is not None:
            self.cached_tokens += record.cached_tokens
            self.cached_reported += 1
        if record.ttft is not None:
            self.ttft.add(record.ttft)
        if self.prefill is not None and record.prefill_throughput is not None:
            self.prefill.add(record.prefill_throughput)


class _ServerShare:
    """A server hit rate attributed to a bucket: each interval's rate weighted by the bucket's
    requests that finished in it."""

    def __init__(self) -> None:
        self.weighted = 0.0
        self.weight = 0

    def add(self, rate: float | None, requests: int) -> None:
        if rate is not None and requests:
            self.weighted += rate * requests
            self.weight += requests

    @property
    def value(self) -> float | None:
        return self.weighted / self.weight if self.weight else None


class SessionAggregate:
    """Feeds session turns into the by-turn and by-gap slices and counts sessions.

    Turns of one session reach it in order (a session's next turn is sent only after its previous
    one ended, and a session stays on one worker), so a session's start is known when its last
    turn arrives.
    """

    def __init__(self, turns: int, gap_edges: tuple[float, ...] = DEFAULT_GAP_EDGES) -> None:
        self.turns = turns
        self.gap_edges = gap_edges
        self._by_turn = [_Slice(throughput=True) for _ in range(turns)]
        self._by_gap = [_Slice(throughput=False) for _ in range(len(gap_edges) + 1)]
        self._gpu = [_ServerShare() for _ in self._by_gap]
        self._external = [_ServerShare() for _ in self._by_gap]
        self._in_interval = [0] * len(self._by_gap)
        self._starts: dict[int, float] = {}
        self.started = self.completed = self.abandoned = self.ended_turns = 0
        self.duration = Distribution.latency()

    def add(self, record: RequestRecord) -> None:
        if record.session is None or record.turn is None:
            return
        turn = min(max(record.turn, 1), self.turns)
        if turn == 1:
            self.started += 1
            self._starts[record.session] = _start(record)
        if not record.ok:
            self.abandoned += 1
            self.ended_turns += turn - 1
            self._starts.pop(record.session, None)
            return
        self._by_turn[turn - 1].add(record)
        if record.idle_gap is not None:
            bucket = bisect.bisect_right(self.gap_edges, record.idle_gap)
            self._by_gap[bucket].add(record)
            self._in_interval[bucket] += 1
        if turn == self.turns:
            self.completed += 1
            self.ended_turns += turn
            start = self._starts.pop(record.session, None)
            if start is not None and record.t_end is not None:
                self.duration.add(record.t_end - start)

    def close_interval(self, server: dict[str, float] | None) -> None:
        """Attribute the interval's server hit rates to the buckets of its requests."""
        figures = server or {}
        for bucket, requests in enumerate(self._in_interval):
            self._gpu[bucket].add(figures.get(GPU_HIT_RATE), requests)
            self._external[bucket].add(figures.get(EXTERNAL_HIT_RATE), requests)
        self._in_interval = [0] * len(self._by_gap)

    def to_stats(self) -> SessionStats:
        return SessionStats(
            started=self.started,
            completed=self.completed,
            abandoned=self.abandoned,
            ended_turns=self.ended_turns,
            duration=self.duration.to_stats(),
            by_turn=[_turn_stats(i + 1, s) for i, s in enumerate(self._by_turn)],
            by_gap=[self._gap_stats(i) for i in range(len(self._by_gap))],
        )

    def _gap_stats(self, bucket: int) -> GapStats:
        edges = (0.0, *self.gap_edges)
        part = self._by_gap[bucket]
        return GapStats(
            low=edges[bucket],
            high=self.gap_edges[bucket] if bucket < len(self.gap_edges) else None,
            requests=part.requests,
            ttft=part.ttft.to_stats(),
            prompt_tokens=part.prompt_tokens,
            cached_tokens=part.cached_tokens,
            cached_tokens_reported=part.cached_reported,
            server_hit_rate=self._gpu[bucket].value,
            server_external_hit_rate=self._external[bucket].value,
        )


def _start(record: RequestRecord) -> float:
    return record.t_intended if record.t_intended is not None else record.t0


def _turn_stats(turn: int, part: _Slice) -> TurnStats:
    assert part.prefill is not None
    return TurnStats(
        turn=turn,
        requests=part.requests,
        ttft=part.ttft.to_stats(),
        prefill_throughput=part.prefill.to_stats(),
        prompt_tokens=part.prompt_tokens,
        cached_tokens=part.cached_tokens,
        cached_tokens_reported=part.cached_reported,
    )


def survival_verdict(stats: SessionStats) -> str:
    """One sentence: how much of an idle conversation stayed cached after each idle gap, and how
    its later turns' TTFT compares with the cold first turn's."""
    waited = [gap for gap in stats.by_gap if gap.requests]
    if not waited:
        return "no session reached a second turn: nothing to say about its cache yet"
    shares = [cached_share(gap) for gap in waited]
    if all(share is not None for share in shares):
        kept = ", ".join(
            f"{console_value(share, FRACTION)} after {gap_label(gap)}"
            for gap, share in zip(waited, shares, strict=True)
        )
        head = f"idle conversations found this much of their prompt cached: {kept}"
    else:
        head = "TTFT after an idle gap of " + ", ".join(
            f"{gap_label(gap)}: {console_value(gap.ttft.mean, SECONDS)}" for gap in waited
        )
    first, later = stats.by_turn[0], stats.by_turn[1:]
    timed = sum(turn.ttft.count for turn in later)
    if not first.ttft.count or not timed:
        return head
    mean = sum((turn.ttft.mean or 0.0) * turn.ttft.count for turn in later) / timed
    return (
        f"{head}; the first turn's TTFT (cold) {console_value(first.ttft.mean, SECONDS)}, "
        f"later turns' {console_value(mean, SECONDS)}"
    )
