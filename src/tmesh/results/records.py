"""The records that flow between the benchmark's stages.

They are plain dataclasses so every stage (and the report commands, which only read files) agrees on
one shape; the JSON written to a run folder is `dataclasses.asdict` of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Api = Literal["completions", "chat"]
"""Which OpenAI endpoint a run calls; with `chat`, a prompt is sent as the user message."""
APIS: tuple[Api, ...] = get_args(Api)

ErrorKind = Literal[
    "connect", "timeout", "http_4xx", "http_5xx", "http_429", "stream_cut", "malformed"
]
"""How a request failed: no connection or no answer (`connect`), no byte for the stall limit
(`timeout`), an HTTP error status by class, a stream that ended before its end marker
(`stream_cut`), or an answer that is not a valid OpenAI stream (`malformed`)."""
ERROR_KINDS: tuple[ErrorKind, ...] = get_args(ErrorKind)

StopReason = Literal[
    "duration",
    "max-requests",
    "signal",
    "errors",
    "failed",
    "write-error",
    "worker-lost",
    "stopped",
    "interrupted",
    "cancelled",
    "end",
]
"""Why a run ended, as `summary.json` records it: a limit it was given (`duration`,
`max-requests`), the workload running out (`end`: a trace replayed to its end), the user
(`signal`, and `interrupted` for a second Ctrl-C; `cancelled` when the Python task running it
was cancelled), a stop rule on
failing requests (`errors`), or a failure of tmesh's own side (`failed`, `write-error`,
`worker-lost`); `stopped` when the load ended without naming a reason."""
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)

Workload = Literal["contexts", "sessions"]
"""What a run sends: long contexts revisited with new questions (`contexts`), or conversations
whose prompt grows turn by turn, with a think time between an answer and the next turn
(`sessions`)."""
WORKLOADS: tuple[Workload, ...] = get_args(Workload)

ArrivalKind = Literal["poisson", "gamma", "constant"]
"""How open-loop arrivals are spaced: exponential gaps (`poisson`), gamma gaps of a given shape
(burstier below 1, more regular above), or equal gaps (`constant`)."""
ARRIVAL_KINDS: tuple[ArrivalKind, ...] = get_args(ArrivalKind)

ThinkTimeDist = Literal["exp", "lognormal", "constant"]
"""How a session's think time between an answer and its next turn is drawn around its mean."""
THINK_TIME_DISTS: tuple[ThinkTimeDist, ...] = get_args(ThinkTimeDist)


@dataclass(frozen=True)
class SessionSpec:
    """The conversations of a `sessions` workload: every prompt is the shared system prompt, then
    each turn's user tokens and answer so far, then the new turn's user tokens.

    `users` sessions run at once (a closed population), unless `session_rate` (sessions per
    second) makes new sessions arrive open-loop.
    """

    system_prompt: int
    turns: int
    turn_input: int
    think_time: float
    think_time_dist: ThinkTimeDist = "exp"
    users: int = 1
    session_rate: float | None = None


@dataclass(frozen=True)
class WorkloadSpec:
    """What the benchmark sends; printed as the "Workload Specifications" block."""

    model: str
    num_contexts: int
    questions_per_context: int
    max_inflight: int
    input_length: int
    output_length: int
    kv_bytes_per_token: int | None = None
    offload_size_gb: float = 100.0
    seed: int = 0
    api: Api = "completions"
    workload: Workload = "contexts"
    request_rate: float | None = None
    arrival: str = "poisson"
    sessions: SessionSpec | None = None


@dataclass(frozen=True)
class RequestPlan:
    """One request to send: which context, which question, and the text to send.

    `visit` counts how many times this context was sent before (0 = first visit, "cold");
    `rotation` is how many full passes over all contexts preceded this request. A turn of a
    session names its `session` and `turn` (from 1); in chat it carries the whole conversation as
    `messages`, which replace the prompt. `max_tokens` replaces the run's output length for this
    request (a trace gives each its own).
    """

    index: int
    context_id: int
    question_id: int
    visit: int
    rotation: int
    context: str
    question: str
    expected_prompt_tokens: int
    session: int | None = None
    turn: int | None = None
    messages: list[dict[str, str]] | None = None
    max_tokens: int | None = None

    @property
    def prompt(self) -> str:
        return self.context + self.question


@dataclass
class RequestRecord:
    """What happened to one request. Times are seconds on the monotonic clock since run start.

    `t_first`/`t_last` are the first and last SSE events carrying generated text (reasoning text
    included); `t_end` the end of the stream (or of the failure). `usage_reported` says whether
    token counts came from the server's `usage` or were estimated by the client;
    `planned_prompt_tokens` is what the prompt builder counted, so a run's files alone show
    whether the server agrees with tmesh's token counts.

    Open-loop and session traffic has a schedule: `t_intended` is when the request was due, so
    `t0 - t_intended` is how late the client sent it (never hidden: latencies are also reported
    from the intended time). A session's turn names its `session`, its `turn` (from 1) and its
    `idle_gap`, the seconds between the end of the session's previous turn and this request.
    `prediction` is what an ideal LRU cache of the server's GPU capacity says of the request
    (`resident`, `evicted` or `new`; see `bench.measure.idealcache`), so TTFT can be read by
    prediction.
    """

    index: int
    context_id: int
    question_id: int
    visit: int
    rotation: int
    t0: float
    t_first: float | None = None
    t_last: float | None = None
    t_end: float | None = None
    prompt_tokens: int = 0
    planned_prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_reported: bool = False
    cached_tokens: int | None = None
    error: ErrorKind | None = None
    error_detail: str | None = None
    status: int | None = None
    retry_after: float | None = None
    worker: int = 0
    t_intended: float | None = None
    session: int | None = None
    turn: int | None = None
    idle_gap: float | None = None
    prediction: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def lateness(self) -> float | None:
        if self.t_intended is None:
            return None
        return max(0.0, self.t0 - self.t_intended)

    @property
    def ttft_from_intended(self) -> float | None:
        if self.t_first is None or self.t_intended is None:
            return None
        return self.t_first - self.t_intended

    @property
    def e2e_from_intended(self) -> float | None:
        if self.t_end is None or self.t_intended is None:
            return None
        return self.t_end - self.t_intended

    @property
    def ttft(self) -> float | None:
        if self.t_first is None:
            return None
        return self.t_first - self.t0

    @property
    def e2e(self) -> float | None:
        if self.t_end is None:
            return None
        return self.t_end - self.t0

    @property
    def decode_time(self) -> float | None:
        if self.t_first is None or self.t_last is None:
            return None
        return self.t_last - self.t_first

    @property
    def itl(self) -> float | None:
        """Mean gap between tokens, from the token count (not the chunk count).

        None when no gap was observed: all of an answer's tokens arrived in one network read, so
        the client saw no time between them (unknown, which is not zero).
        """
        span = self.decode_time
        if not span or span <= 0 or self.completion_tokens < 2:
            return None
        return span / (self.completion_tokens - 1)

    @property
    def prefill_throughput(self) -> float | None:
        ttft = self.ttft
        if not ttft or ttft <= 0:
            return None
        return self.prompt_tokens / ttft

    @property
    def decode_throughput(self) -> float | None:
        span = self.decode_time
        if not span or span <= 0 or self.completion_tokens < 2:
            return None
        return (self.completion_tokens - 1) / span


@dataclass
class MetricStats:
    """Mean and percentiles of one latency or throughput metric over a set of requests."""

    count: int = 0
    mean: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    min: float | None = None
    max: float | None = None


@dataclass
class WindowStats:
    """Aggregates over a window of finished requests: the whole run, one interval, or a phase."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ttft: MetricStats = field(default_factory=MetricStats)
    itl: MetricStats = field(default_factory=MetricStats)
    e2e: MetricStats = field(default_factory=MetricStats)
    prefill_throughput: MetricStats = field(default_factory=MetricStats)
    decode_throughput: MetricStats = field(default_factory=MetricStats)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_reported: int = 0
    good_requests: int = 0
    """Successful requests that met every limit of the run's SLO (0 without one)."""
    lateness: MetricStats = field(default_factory=MetricStats)
    ttft_from_intended: MetricStats = field(default_factory=MetricStats)
    e2e_from_intended: MetricStats = field(default_factory=MetricStats)


@dataclass
class ClientHealth:
    """How the load generator behaved in a window, so a client limit is not blamed on the server.

    `inflight_mean` is the time-weighted number of requests outstanding; `dispatch_delay_ms` the
    mean time between a slot freeing and the next request being written; `loop_lag_ms` the worst
    sampled event-loop lag.

    With a schedule (open loop, sessions): `sent` requests went out in the window, against
    `target_rate` per second when one was asked for; `cap_hits` of them waited for a free
    in-flight slot; `lateness_ms` and `lateness_max_ms` say how late they went out (the max
    includes a request still waiting for a slot at the end of the window).
    """

    inflight_mean: float = 0.0
    inflight_target: int = 0
    dispatch_delay_ms: float = 0.0
    loop_lag_ms: float = 0.0
    sent: int = 0
    target_rate: float | None = None
    cap_hits: int = 0
    lateness_ms: float = 0.0
    lateness_max_ms: float = 0.0
    scheduled: bool = False
    parts_lost: int = 0
    """Parts of a spread run (`--workers`, `--ray`) lost so far, with `--tolerate-actor-loss`."""


@dataclass
class TurnStats:
    """Successful requests of one turn index of the sessions (turn 1 is cold by construction)."""

    turn: int
    requests: int = 0
    ttft: MetricStats = field(default_factory=MetricStats)
    prefill_throughput: MetricStats = field(default_factory=MetricStats)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_reported: int = 0


@dataclass
class GapStats:
    """Successful turns whose idle gap since the session's previous turn fell in [low, high)
    seconds (`high` None: no upper bound): how well an idle context survived that long.

    `server_hit_rate` is the server's GPU prefix-cache hit rate (and `server_external_hit_rate`
    its offload tier's) over the intervals these requests finished in, weighted by how many
    finished in each: the server's counters cannot tell one request from another.
    """

    low: float
    high: float | None
    requests: int = 0
    ttft: MetricStats = field(default_factory=MetricStats)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_reported: int = 0
    server_hit_rate: float | None = None
    server_external_hit_rate: float | None = None


@dataclass
class SessionStats:
    """The sessions of a run so far: how many began, finished every turn, or were abandoned at a
    failed turn; how many turns the ended ones had; how long the finished ones took (from the
    intended start of the first turn to the end of the last); and the breakdowns by turn and by
    idle gap."""

    started: int = 0
    completed: int = 0
    abandoned: int = 0
    ended_turns: int = 0
    duration: MetricStats = field(default_factory=MetricStats)
    by_turn: list[TurnStats] = field(default_factory=list)
    by_gap: list[GapStats] = field(default_factory=list)

    @property
    def mean_turns(self) -> float | None:
        ended = self.completed + self.abandoned
        return self.ended_turns / ended if ended else None


@dataclass
class IntervalSnapshot:
    """One line of `intervals.jsonl`: what the 5-second console block shows."""

    index: int
    elapsed: float
    interval_seconds: float
    total_requests: int
    qps: float
    global_stats: WindowStats
    interval_stats: WindowStats
    cold_ttft: MetricStats = field(default_factory=MetricStats)
    warm_ttft: MetricStats = field(default_factory=MetricStats)
    rotations: int = 0
    health: ClientHealth = field(default_factory=ClientHealth)
    server: dict[str, float] | None = None
    interval_cold_ttft: MetricStats = field(default_factory=MetricStats)
    interval_warm_ttft: MetricStats = field(default_factory=MetricStats)
    error_messages: dict[str, str] = field(default_factory=dict)
    """The first message of each error kind first seen in this interval (one line, masked)."""
    verdict: str | None = None
    """The cache verdict on the run so far, as the summary would state it if the run ended here."""
    sessions: SessionStats | None = None
    """The sessions since the start (`sessions` workload only)."""
    slo: dict[str, float] | None = None
    """The limits goodput is measured against, if any (as in `RunSummary.slo`)."""


@dataclass
class RunSummary:
    """`summary.json`: written on every stop path (duration, count, signal, fatal error)."""

    started_at: str
    elapsed: float
    stop_reason: StopReason
    total_requests: int
    failed_requests: int
    qps: float
    input_token_throughput: float
    output_token_throughput: float
    overall: WindowStats
    steady: WindowStats
    warmup_seconds: float
    cold_ttft: MetricStats
    warm_ttft: MetricStats
    rotations: int
    health: ClientHealth = field(default_factory=ClientHealth)
    server: dict[str, float] | None = None
    verdict: str | None = None
    steady_qps: float = 0.0
    steady_input_token_throughput: float = 0.0
    steady_output_token_throughput: float = 0.0
    error_messages: dict[str, str] = field(default_factory=dict)
    """The first message of each error kind the run met (one line, masked)."""
    sessions: SessionStats | None = None
    slo: dict[str, float] | None = None
    """The limits goodput was measured against (`ttft`, `itl`, `e2e`, in seconds), if any."""
    sent_requests: int = 0
    request_rate: float = 0.0
    """Requests sent (whatever their outcome) per second, from the start to the last send."""
    cap_hits: int = 0
    """Scheduled requests that had to wait for a free in-flight slot."""
    parts: list[dict[str, Any]] | None = None
    """A run spread over processes or machines: each part's number, node, request files (in
    the run folder, or on the node with `--no-gather`), clock offset and uncertainty, or why it
    was lost."""
