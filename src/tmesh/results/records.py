"""The records that flow between the benchmark's stages.

They are plain dataclasses so every stage (and the report commands, which only read files) agrees on
one shape; the JSON written to a run folder is `dataclasses.asdict` of these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

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
]
"""Why a run ended, as `summary.json` records it: a limit it was given (`duration`,
`max-requests`), the user (`signal`, and `interrupted` for a second Ctrl-C; `cancelled` when
the Python task running it was cancelled), a stop rule on
failing requests (`errors`), or a failure of tmesh's own side (`failed`, `write-error`,
`worker-lost`); `stopped` when the load ended without naming a reason."""
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)


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


@dataclass(frozen=True)
class RequestPlan:
    """One request to send: which context, which question, and the text to send.

    `visit` counts how many times this context was sent before (0 = first visit, "cold");
    `rotation` is how many full passes over all contexts preceded this request.
    """

    index: int
    context_id: int
    question_id: int
    visit: int
    rotation: int
    context: str
    question: str
    expected_prompt_tokens: int

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

    @property
    def ok(self) -> bool:
        return self.error is None

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


@dataclass
class ClientHealth:
    """How the load generator behaved in a window, so a client limit is not blamed on the server.

    `inflight_mean` is the time-weighted number of requests outstanding; `dispatch_delay_ms` the
    mean time between a slot freeing and the next request being written; `loop_lag_ms` the worst
    sampled event-loop lag.
    """

    inflight_mean: float = 0.0
    inflight_target: int = 0
    dispatch_delay_ms: float = 0.0
    loop_lag_ms: float = 0.0


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
