"""Everything `tmesh-cli benchmark` was asked to do, as one plain record, each option declared once.

Each field carries its help, unit, bounds and group (`tmesh.fieldspec`): the command line is built
from these fields, values given from Python are checked against them, and `config.json` stores the
record (key masked) so a run can be repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tmesh.bench.load.arrivals import parse_arrival
from tmesh.bench.measure.goodput import parse_slo
from tmesh.bench.measure.sessions import parse_gap_buckets
from tmesh.fieldspec import option, parsed_by
from tmesh.results.records import APIS, THINK_TIME_DISTS, WORKLOADS, Api, ThinkTimeDist, Workload

TARGET, SIZING, TRAFFIC, SESSIONS, GOODPUT, RUN, OUTPUT, TELEMETRY = (
    "target",
    "workload sizing",
    "open-loop traffic",
    "sessions (--workload sessions)",
    "goodput",
    "run control",
    "output",
    "server telemetry",
)
TRACE = "trace replay"
TRACE_FORMATS = ("auto", "mooncake", "bailian")
TRACE_TIMINGS = ("trace", "ignore")


@dataclass
class BenchmarkOptions:
    endpoint: str | None = option(
        None, group=TARGET, help="OpenAI-compatible URL (host:port, …/v1, …/v1/completions)"
    )
    api_key: str | None = option(
        None,
        group=TARGET,
        help="bearer key (default: $TMESH_API_KEY or $OPENAI_API_KEY); never printed in full",
    )
    model: str | None = option(
        None, group=TARGET, help="model to use when /v1/models lists several (default: first)"
    )
    api: Api = option("completions", group=TARGET, choices=APIS, help="which API to call")
    insecure: bool = option(
        False, group=TARGET, help="skip TLS certificate checks (default: verify)"
    )
    demo: bool = option(
        False,
        group=TARGET,
        help="run against the built-in simulated engine (stops after 90 s unless --duration)",
    )
    profile: str | None = option(
        None,
        group=TARGET,
        help="simulated engine for --demo (see simulate --list-profiles)",
    )
    gpu_kv_tokens: int | None = option(
        None,
        group=TARGET,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        default_text="the profile's; 16000 with --workload sessions, so idle sessions are evicted "
        "within a short demo",
        help="GPU KV cache capacity of the simulated engine for --demo",
    )
    workload: Workload = option(
        "contexts",
        group=SIZING,
        choices=WORKLOADS,
        help="contexts: long contexts revisited with new questions; sessions: conversations "
        "growing turn by turn with think times",
    )
    offload_size: float = option(
        100.0,
        group=SIZING,
        metavar="GB",
        unit="GB",
        minimum=0,
        above_minimum=True,
        help="KV offload buffer size in GB",
    )
    kv_bytes_per_token: int | None = option(
        None,
        group=SIZING,
        metavar="BYTES",
        unit="bytes",
        minimum=0,
        above_minimum=True,
        help="KV cache bytes per token (default: from --model-config or built-in table)",
    )
    model_config: Path | None = option(
        None,
        group=SIZING,
        metavar="PATH",
        help="Hugging Face config.json to compute KV bytes per token from",
    )
    tokenizer: str | None = option(
        None,
        group=SIZING,
        metavar="PATH",
        help="local tokenizer.json or folder for exact token counts "
        "(default: server /tokenize, else calibration, else estimate)",
    )
    num_contexts: int | None = option(
        None,
        group=SIZING,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="number of long contexts (default: sized from --offload-size)",
    )
    questions_per_context: int | None = option(
        None,
        group=SIZING,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="distinct questions per context (default: = number of contexts)",
    )
    max_inflight: int | None = option(
        None,
        group=SIZING,
        metavar="N",
        minimum=0,
        above_minimum=True,
        default_text="contexts // 3; --users with sessions; 10 s of arrivals with "
        "--request-rate or --session-rate",
        help="requests outstanding at once; with a schedule, a safety cap whose hits are counted",
    )
    input_length: int = option(
        32000,
        group=SIZING,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        help="tokens per context",
    )
    output_length: int = option(
        100,
        group=SIZING,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        help="tokens generated per request",
    )
    seed: int = option(0, group=SIZING, minimum=0, help="seed for prompts and question order")
    request_rate: float | None = option(
        None,
        group=TRAFFIC,
        metavar="R",
        unit="req/s",
        minimum=0,
        above_minimum=True,
        help="send requests open-loop at R per second, whatever the server's latency "
        "(default: closed loop)",
    )
    arrival: str = option(
        "poisson",
        group=TRAFFIC,
        metavar="KIND",
        check=parsed_by(parse_arrival),
        help="spacing of open-loop arrivals (--request-rate, --session-rate): poisson, "
        "gamma:SHAPE or constant",
    )
    system_prompt: int = option(
        2000,
        group=SESSIONS,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        help="tokens of the system prompt every session shares",
    )
    turns: int = option(
        8, group=SESSIONS, metavar="N", minimum=0, above_minimum=True, help="turns per session"
    )
    turn_input: int = option(
        300,
        group=SESSIONS,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        help="new user tokens each turn adds after the previous answer",
    )
    think_time: float = option(
        10.0,
        group=SESSIONS,
        metavar="SECONDS",
        unit="s",
        minimum=0,
        help="mean pause between an answer and the session's next turn",
    )
    think_time_dist: ThinkTimeDist = option(
        "exp", group=SESSIONS, choices=THINK_TIME_DISTS, help="distribution of think times"
    )
    users: int = option(
        16,
        group=SESSIONS,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="sessions active at once (a closed population; a finished session is replaced)",
    )
    session_rate: float | None = option(
        None,
        group=SESSIONS,
        metavar="R",
        unit="sessions/s",
        minimum=0,
        above_minimum=True,
        help="new sessions arrive open-loop at R per second instead of --users",
    )
    gap_buckets: str = option(
        "5,30,120",
        group=SESSIONS,
        metavar="SECONDS",
        check=parsed_by(parse_gap_buckets),
        help="edges of the idle-gap buckets of the cache-survival curve",
    )
    slo: str | None = option(
        None,
        group=GOODPUT,
        metavar="LIMITS",
        check=parsed_by(parse_slo),
        help="latency limits in seconds for goodput, e.g. ttft=2,itl=0.05,e2e=30 (any subset)",
    )
    goodput_target: float = option(
        0.95,
        group=GOODPUT,
        metavar="SHARE",
        minimum=0,
        above_minimum=True,
        check=lambda value: None if value <= 1 else "at most 1",
        help="share of requests that must meet the SLO (--find-max-users)",
    )
    find_max_users: bool = option(
        False,
        group=GOODPUT,
        help="ramp --users (sessions, with --slo) and report the most that held --goodput-target",
    )
    duration: float | None = option(
        None,
        group=RUN,
        metavar="SECONDS",
        unit="s",
        minimum=0,
        above_minimum=True,
        help="stop after this many seconds (default: run until Ctrl-C; 90 with --demo)",
    )
    max_requests: int | None = option(
        None,
        group=RUN,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="stop after N finished requests (default: no limit)",
    )
    warmup: float = option(
        0.0,
        group=RUN,
        metavar="SECONDS",
        unit="s",
        minimum=0,
        help="exclude the first SECONDS from steady-state figures",
    )
    request_timeout: float = option(
        300.0,
        group=RUN,
        metavar="SECONDS",
        unit="s",
        minimum=0,
        above_minimum=True,
        help="fail a request after this long without a byte",
    )
    max_consecutive_errors: int | None = option(
        None,
        group=RUN,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="stop with exit 1 after N failures in a row (default: no limit)",
    )
    workers: int = option(
        1,
        group=RUN,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="load-generating processes sharing the in-flight limit",
    )
    interval: float = option(
        5.0,
        group=RUN,
        metavar="SECONDS",
        unit="s",
        minimum=0,
        above_minimum=True,
        help="seconds between progress blocks",
    )
    grace: float = option(
        5.0,
        group=RUN,
        unit="s",
        minimum=0,
        flagged=False,
        help="seconds in-flight requests get to finish once the run stops",
    )
    output_dir: Path | None = option(
        None,
        group=OUTPUT,
        metavar="DIR",
        help="where to write the run's files (default: ./tmesh-runs/<timestamp>/)",
    )
    max_records: int | None = option(
        None,
        group=OUTPUT,
        metavar="N",
        minimum=0,
        above_minimum=True,
        help="rotate requests.jsonl every N lines (default: never)",
    )
    report: bool = option(
        False, group=OUTPUT, help="write report.html into the run folder when the run stops"
    )
    quiet: bool = option(False, group=OUTPUT, help="print only the final summary")
    json: bool = option(
        False,
        group=OUTPUT,
        help="print one JSON object per interval on stdout (blocks go to stderr)",
    )
    live: bool = option(False, group=OUTPUT, help="live-updating terminal view")
    metrics_url: str | None = option(
        None,
        group=TELEMETRY,
        metavar="URL",
        help="server Prometheus /metrics URL (default: same host as --endpoint)",
    )
    server_metrics: bool = option(
        True, group=TELEMETRY, negate=True, help="do not scrape the server's /metrics"
    )
    prometheus_port: int | None = option(
        None,
        group=TELEMETRY,
        metavar="PORT",
        minimum=0,
        above_minimum=True,
        help="serve tmesh's own live metrics on this port (default: off)",
    )
    connect_timeout: float = option(
        30.0,
        group=TARGET,
        metavar="SECONDS",
        unit="s",
        minimum=0,
        help="keep retrying discovery this long while the server refuses, resets or answers "
        "5xx/429 (0: fail at once)",
    )
    trace: Path | None = option(
        None,
        group=TRACE,
        metavar="FILE",
        help="replay this trace (Mooncake or Bailian JSON Lines) with token-exact prompts "
        "instead of the contexts workload",
    )
    trace_format: str = option(
        "auto",
        group=TRACE,
        choices=TRACE_FORMATS,
        help="the trace's format (auto: from its fields)",
    )
    block_size: int | None = option(
        None,
        group=TRACE,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        help="tokens per hash id of the trace (default: 512 for Mooncake, 16 for Bailian)",
    )
    time_scale: float = option(
        1.0,
        group=TRACE,
        metavar="X",
        minimum=0,
        above_minimum=True,
        help="replay X times as fast as the trace's timestamps (2 = twice as fast)",
    )
    loop: bool = option(False, group=TRACE, help="start the trace again when it ends")
    trace_timing: str = option(
        "trace",
        group=TRACE,
        choices=TRACE_TIMINGS,
        help="trace: send each request at its time in the trace (open loop); ignore: send them "
        "back to back, --max-inflight at a time",
    )
    cache_tokens: int | None = option(
        None,
        group=TELEMETRY,
        metavar="TOKENS",
        unit="tokens",
        minimum=0,
        above_minimum=True,
        help="GPU KV capacity for the ideal-cache score (default: as the server reports it)",
    )
