"""Aggregates finished requests into the figures the console, files and summary show.

Definitions, per request: TTFT = t_first - t0,
ITL = (t_last - t_first) / (completion_tokens - 1), E2E = t_end - t0, prefill throughput =
prompt_tokens / TTFT, decode throughput = (completion_tokens - 1) / (t_last - t_first), in seconds
and tokens/s; every average is a mean over successful requests. QPS = successful requests /
elapsed seconds. Failed requests only count, by kind: their partial timings never enter a metric.

Memory is bounded whatever the run length: records are not kept, only histograms and sums. Each
record is recorded once, into the open interval's aggregate (split by whether it finished before
or after the warm-up); closing the interval merges that into the run-wide and steady-state
aggregates, which is exact and cheaper than recording every value three times.

Windows: the interval holds the records added since the previous snapshot; steady state holds the
records whose t_end is at or after `warmup_seconds`; cold/warm split TTFT between a context's first
visit (visit 0) and its revisits. A rotation completes when every context has been served (a
request for it succeeded) once more; `rotations` is how many have completed, so a run whose
requests all fail completes none.

Scheduled traffic (open loop, sessions) adds, per window, how late the client sent each request
(`lateness` = t0 - t_intended) and TTFT and E2E from the intended send time; with an SLO, the
requests that met it (`bench.measure.goodput`). Sessions add the by-turn and by-gap figures of
`bench.measure.sessions`, run-wide.
"""

from __future__ import annotations

from tmesh.bench.measure.goodput import Slo
from tmesh.bench.measure.sessions import DEFAULT_GAP_EDGES, SessionAggregate
from tmesh.bench.measure.stats import Distribution
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    RequestRecord,
    RunSummary,
    StopReason,
    WindowStats,
    WorkloadSpec,
)


class WindowAggregate:
    """Streaming aggregates over one window of finished requests."""

    def __init__(self, slo: Slo | None = None) -> None:
        self.slo = slo
        self.good = 0
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.ttft = Distribution.latency()
        self.itl = Distribution.latency()
        self.e2e = Distribution.latency()
        self.prefill_throughput = Distribution.throughput()
        self.decode_throughput = Distribution.throughput()
        self.cold_ttft = Distribution.latency()
        self.warm_ttft = Distribution.latency()
        self.lateness = Distribution.latency()
        self.ttft_from_intended = Distribution.latency()
        self.e2e_from_intended = Distribution.latency()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.cached_tokens_reported = 0

    def add(self, record: RequestRecord) -> None:
        lateness = record.lateness
        if lateness is not None:
            self.lateness.add(lateness)
        if not record.ok:
            kind = str(record.error)
            self.errors[kind] = self.errors.get(kind, 0) + 1
            return
        self.requests += 1
        if self.slo is not None and self.slo.met_by(record):
            self.good += 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        if record.cached_tokens is not None:
            self.cached_tokens += record.cached_tokens
            self.cached_tokens_reported += 1
        ttft = record.ttft
        if ttft is not None:
            self.ttft.add(ttft)
            (self.cold_ttft if record.visit == 0 else self.warm_ttft).add(ttft)
        for dist, value in (
            (self.itl, record.itl),
            (self.e2e, record.e2e),
            (self.prefill_throughput, record.prefill_throughput),
            (self.decode_throughput, record.decode_throughput),
            (self.ttft_from_intended, record.ttft_from_intended),
            (self.e2e_from_intended, record.e2e_from_intended),
        ):
            if value is not None:
                dist.add(value)

    def reset(self) -> None:
        self.good = 0
        self.requests = 0
        self.errors = {}
        for name in _DISTRIBUTIONS:
            getattr(self, name).reset()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.cached_tokens_reported = 0

    def merge(self, other: WindowAggregate) -> None:
        self.good += other.good
        self.requests += other.requests
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        for name in _DISTRIBUTIONS:
            getattr(self, name).merge(getattr(other, name))
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.cached_tokens_reported += other.cached_tokens_reported

    @property
    def failures(self) -> int:
        return sum(self.errors.values())

    def to_stats(self) -> WindowStats:
        return WindowStats(
            requests=self.requests,
            errors=dict(sorted(self.errors.items())),
            ttft=self.ttft.to_stats(),
            itl=self.itl.to_stats(),
            e2e=self.e2e.to_stats(),
            prefill_throughput=self.prefill_throughput.to_stats(),
            decode_throughput=self.decode_throughput.to_stats(),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            cached_tokens_reported=self.cached_tokens_reported,
            good_requests=self.good,
            lateness=self.lateness.to_stats(),
            ttft_from_intended=self.ttft_from_intended.to_stats(),
            e2e_from_intended=self.e2e_from_intended.to_stats(),
        )


_DISTRIBUTIONS = (
    "ttft",
    "itl",
    "e2e",
    "prefill_throughput",
    "decode_throughput",
    "cold_ttft",
    "warm_ttft",
    "lateness",
    "ttft_from_intended",
    "e2e_from_intended",
)


def _merged(*parts: WindowAggregate) -> WindowAggregate:
    result = WindowAggregate(parts[0].slo if parts else None)
    for part in parts:
        result.merge(part)
    return result


class RotationCounter:
    """Completed passes over all contexts, robust to requests finishing out of order.

    Per context it keeps the number of visits known to have finished (highest visit + 1); the
    completed rotations are the minimum over contexts. The minimum is recomputed only when the
    last context sitting at it moves up, so the cost is O(contexts) per rotation.
    """

    def __init__(self, num_contexts: int) -> None:
        self._visits = [0] * num_contexts
        self.completed = 0
        self._at_minimum = num_contexts

    def add(self, context_id: int, visit: int) -> None:
        before = self._visits[context_id]
        if visit + 1 <= before:
            return
        self._visits[context_id] = visit + 1
        if before == self.completed:
            self._at_minimum -= 1
            if self._at_minimum == 0:
                self.completed = min(self._visits)
                self._at_minimum = self._visits.count(self.completed)


class Recorder:
    """Feeds finished requests into the global, interval, steady-state and cold/warm windows.

    `now` arguments are seconds since run start on the same monotonic clock as the records.
    """

    def __init__(
        self,
        spec: WorkloadSpec,
        warmup_seconds: float = 0.0,
        interval_seconds: float = 5.0,
        slo: Slo | None = None,
        gap_edges: tuple[float, ...] = DEFAULT_GAP_EDGES,
    ) -> None:
        self.spec = spec
        self.slo = slo
        self.warmup_seconds = warmup_seconds
        self.interval_seconds = interval_seconds
        self._global = WindowAggregate(slo)
        self._steady = WindowAggregate(slo)
        self._open_warmup = WindowAggregate(slo)
        self._open_steady = WindowAggregate(slo)
        sessions = spec.sessions
        self._sessions = SessionAggregate(sessions.turns, gap_edges) if sessions else None
        self._rotations = RotationCounter(0 if sessions else spec.num_contexts)
        self._sent = 0
        self._last_send = 0.0
        self._cap_hits = 0
        self._last_snapshot_at = 0.0
        self._snapshots = 0
        self._health = ClientHealth(inflight_target=spec.max_inflight)
        self._server: dict[str, float] | None = None
        self._error_messages: dict[str, str] = {}
        self._new_error_messages: dict[str, str] = {}

    @property
    def rotations(self) -> int:
        return self._rotations.completed

    def add(self, record: RequestRecord) -> None:
        finished = record.t_end if record.t_end is not None else record.t0
        window = self._open_steady if finished >= self.warmup_seconds else self._open_warmup
        window.add(record)
        self._sent += 1
        self._last_send = max(self._last_send, record.t0)
        if self._sessions is not None:
            self._sessions.add(record)
        elif record.ok:
            self._rotations.add(record.context_id, record.visit)
        elif record.error is not None and record.error not in self._error_messages:
            message = record.error_detail or record.error
            self._error_messages[record.error] = message
            self._new_error_messages[record.error] = message

    def snapshot(
        self,
        now: float,
        server: dict[str, float] | None = None,
        health: ClientHealth | None = None,
    ) -> IntervalSnapshot:
        """Close the open interval and report it alongside the run-wide figures."""
        interval = self._close_interval()
        if health is not None:
            self._health = health
            self._cap_hits += health.cap_hits
        if self._sessions is not None:
            self._sessions.close_interval(server)
        self._server = server
        snap = IntervalSnapshot(
            index=self._snapshots,
            elapsed=now,
            interval_seconds=now - self._last_snapshot_at,
            total_requests=self._global.requests,
            qps=_rate(self._global.requests, now),
            global_stats=self._global.to_stats(),
            interval_stats=interval.to_stats(),
            cold_ttft=self._global.cold_ttft.to_stats(),
            warm_ttft=self._global.warm_ttft.to_stats(),
            interval_cold_ttft=interval.cold_ttft.to_stats(),
            interval_warm_ttft=interval.warm_ttft.to_stats(),
            rotations=self.rotations,
            health=self._health,
            server=server,
            error_messages=self._new_error_messages,
            sessions=self._sessions.to_stats() if self._sessions else None,
            slo=self.slo.limits() if self.slo else None,
        )
        self._new_error_messages = {}
        self._snapshots += 1
        self._last_snapshot_at = now
        self._open_warmup.reset()
        self._open_steady.reset()
        return snap

    def _close_interval(self) -> WindowAggregate:
        """Fold the open interval into the run-wide windows and return it (valid until reset).

        The interval is the warm-up side with the steady side folded in: merges are C-speed array
        adds, and reusing the two open aggregates means nothing is allocated per interval.
        """
        self._global.merge(self._open_warmup)
        self._global.merge(self._open_steady)
        self._steady.merge(self._open_steady)
        self._open_warmup.merge(self._open_steady)
        return self._open_warmup

    def summary(self, now: float, stop_reason: StopReason, started_at: str) -> RunSummary:
        """Run-wide figures including requests finished since the last snapshot.

        Health and server figures are those of the last snapshot; `verdict` is left for the
        caller, which knows the server's cache geometry.
        """
        overall = _merged(self._global, self._open_warmup, self._open_steady)
        steady = _merged(self._steady, self._open_steady)
        steady_seconds = now - self.warmup_seconds
        return RunSummary(
            started_at=started_at,
            elapsed=now,
            stop_reason=stop_reason,
            total_requests=overall.requests,
            failed_requests=overall.failures,
            qps=_rate(overall.requests, now),
            input_token_throughput=_rate(overall.prompt_tokens, now),
            output_token_throughput=_rate(overall.completion_tokens, now),
            overall=overall.to_stats(),
            steady=steady.to_stats(),
            warmup_seconds=self.warmup_seconds,
            cold_ttft=overall.cold_ttft.to_stats(),
            warm_ttft=overall.warm_ttft.to_stats(),
            rotations=self.rotations,
            health=self._health,
            server=self._server,
            steady_qps=_rate(steady.requests, steady_seconds),
            steady_input_token_throughput=_rate(steady.prompt_tokens, steady_seconds),
            steady_output_token_throughput=_rate(steady.completion_tokens, steady_seconds),
            error_messages=dict(self._error_messages),
            sessions=self._sessions.to_stats() if self._sessions else None,
            slo=self.slo.limits() if self.slo else None,
            sent_requests=self._sent,
            request_rate=_rate(self._sent, self._last_send),
            cap_hits=self._cap_hits,
        )


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else 0.0
