"""Console text: the seed's labels and order (golden), extra lines, JSON, summary."""

from __future__ import annotations

import io
from dataclasses import asdict

import orjson
from factories import SEED_LABELS, SEED_SPEC, run_summary
from rich.console import Console

from tmesh.bench.output import console
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    MetricStats,
    RunSummary,
    WindowStats,
)

SPEC = SEED_SPEC


def window(requests: int, ttft: float, itl: float, prefill: float, decode: float) -> WindowStats:
    return WindowStats(
        requests=requests,
        ttft=MetricStats(requests, ttft, 1.8, 2.5, 2.9, 0.4, 3.0),
        itl=MetricStats(requests, itl, 0.0025, 0.003, 0.004, 0.002, 0.005),
        e2e=MetricStats(requests, ttft + 0.25, 2.1, 2.8, 3.2, 0.7, 3.3),
        prefill_throughput=MetricStats(requests, prefill),
        decode_throughput=MetricStats(requests, decode),
        prompt_tokens=requests * 32000,
        completion_tokens=requests * 100,
    )


def seed_snapshot(**changes: object) -> IntervalSnapshot:
    """The seed's second block (10 s, 74 requests, 50 in the last interval) as a snapshot."""
    snap = IntervalSnapshot(
        index=1,
        elapsed=10.008518934249878,
        interval_seconds=5.000754833221436,
        total_requests=74,
        qps=7.393701354429838,
        global_stats=window(
            74, 1.1941296603228595, 0.0034814370141559065, 81783.8627181991, 1513.3255635090504
        ),
        interval_stats=window(
            50, 0.8336528253555298, 0.003946225047227238, 98600.03776836112, 942.2872125687559
        ),
        cold_ttft=MetricStats(count=61, mean=1.5),
        warm_ttft=MetricStats(count=13, mean=0.25),
        rotations=1,
        health=ClientHealth(inflight_mean=19.6, inflight_target=20),
    )
    for key, value in changes.items():
        setattr(snap, key, value)
    return snap


SEED_BLOCK = """\
Elapsed Time: 10.01 s
Total Number of Requests Processed: 74
QPS: 7.394
Global Average TTFT: 1.194 s
Global Average ITL: 0.003481 s
Global Average Prefill Throughput: 81783.9 tokens/s
Global Average Decode Throughput: 1513.3 tokens/s
Requests Processed in Last 5 second Interval: 50
Interval Average TTFT: 0.8337 s
Interval Average ITL: 0.003946 s
Interval Average Prefill Throughput: 98600.0 tokens/s
Interval Average Decode Throughput: 942.3 tokens/s"""


def test_interval_block_golden_seed_lines() -> None:
    lines = console.format_interval(seed_snapshot()).splitlines()
    assert "\n".join(lines[:12]) == SEED_BLOCK
    assert [line.split(": ", 1)[0] for line in lines[:12]] == SEED_LABELS


def test_seed_values_parse_as_number_then_unit() -> None:
    for line in console.format_interval(seed_snapshot()).splitlines()[:12]:
        float(line.split(": ", 1)[1].split()[0])


def test_extra_lines_follow_the_seed_block() -> None:
    extra = console.format_interval(seed_snapshot()).splitlines()[12:]
    assert extra[:3] == [
        "TTFT p50 / p90 / p99: 1.800 / 2.500 / 2.900 s",
        "ITL p50 / p90 / p99: 0.002500 / 0.003000 / 0.004000 s",
        "E2E p50 / p90 / p99: 2.100 / 2.800 / 3.200 s",
    ]
    assert "Errors: none" in extra
    assert "Context Rotations Completed: 1" in extra
    assert (
        "TTFT Cold / Warm (first visit / revisit): 1.500 s (n=61) / 0.2500 s (n=13), "
        "warm 6.0x faster"
    ) in extra
    assert "In-flight Requests (achieved / target): 19.6 / 20" in extra
    assert not any(line.startswith("Server") for line in extra)


def test_errors_line_totals_and_interval_by_kind() -> None:
    snap = seed_snapshot()
    snap.global_stats.errors = {"timeout": 2, "http_5xx": 3}
    snap.interval_stats.errors = {"timeout": 1}
    assert "Errors: 5 (http_5xx 3, timeout 2); last 5 s: 1 (timeout 1)" in console.format_interval(
        snap
    )


def test_first_message_of_a_new_error_kind_follows_the_errors_line() -> None:
    snap = seed_snapshot()
    snap.global_stats.errors = {"http_4xx": 2}
    snap.error_messages = {"http_4xx": "HTTP 400 Bad Request: request exceeds the context size"}
    lines = console.format_interval(snap).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Errors:"))
    assert lines[at + 1] == (
        "First Error (http_4xx): HTTP 400 Bad Request: request exceeds the context size"
    )


def test_no_request_interval_replaces_the_interval_part_with_one_line() -> None:
    lines = console.format_interval(seed_snapshot(interval_stats=WindowStats())).splitlines()
    assert [line.split(": ", 1)[0] for line in lines[:7]] == SEED_LABELS[:7]
    assert lines[7] == "no requests finished in the last 5 s"
    assert not any(line.startswith(("Interval Average", "Requests Processed")) for line in lines)


def test_interval_with_only_failures_says_none_succeeded() -> None:
    snap = seed_snapshot(interval_stats=WindowStats(errors={"http_5xx": 2}))
    snap.global_stats.errors = {"http_5xx": 2}
    lines = console.format_interval(snap).splitlines()
    assert lines[7] == "no requests succeeded in the last 5 s"
    assert "Errors: 2 (http_5xx 2); last 5 s: 2 (http_5xx 2)" in lines


def test_first_block_before_any_request_shows_na() -> None:
    snap = seed_snapshot(
        global_stats=WindowStats(), interval_stats=WindowStats(), total_requests=0, qps=0.0
    )
    text = console.format_interval(snap)
    assert "Global Average TTFT: n/a" in text
    assert "TTFT p50 / p90 / p99: n/a" in text
    assert "no requests finished in the last 5 s" in text


def test_server_lines_grouped_and_formatted() -> None:
    server = {
        "gpu_hit_rate": 0.125,
        "external_hit_rate": 0.8,
        "prompt_tokens": 1_600_000.0,
        "gpu_hit_tokens": 200_000.0,
        "external_hit_tokens": 1_280_000.0,
        "kv_usage_perc": 0.97,
        "running": 20.0,
        "waiting": 3.0,
        "preemptions": 0.0,
        "offload_load_bytes": 3 * 1024**3,
        "something_new": 1.5,
    }
    text = console.format_interval(seed_snapshot(server=server))
    assert text.splitlines()[-6:] == [
        "Server Prefix Cache Hit Rate: GPU 12.5% · external 80.0%",
        "Server Prompt Tokens: total 1600000 · GPU hits 200000 · external hits 1280000",
        "Server KV Cache Usage: 97.0%",
        "Server Requests: running 20 · waiting 3",
        "Server Preemptions: 0",
        "Server Offload Loaded: 3.0 GiB",
    ]
    assert "something_new" not in text, "a key the catalogue does not name is never dumped raw"


def test_server_line_for_a_rate_the_server_could_not_compute() -> None:
    lines = console.format_interval(seed_snapshot(server={"gpu_hit_rate": float("nan")}))
    assert lines.splitlines()[-1] == "Server Prefix Cache Hit Rate: GPU n/a"


def test_cached_tokens_line_from_usage() -> None:
    snap = seed_snapshot()
    snap.interval_stats.cached_tokens = 50 * 30000
    snap.interval_stats.cached_tokens_reported = 50
    assert (
        "Cached Prompt Tokens (usage, interval): 30000 per request "
        "(50 of 50 requests reported, 93.8% of prompt tokens)"
    ) in console.format_interval(snap).splitlines()


def test_interval_json_is_one_line_of_the_snapshot() -> None:
    snap = seed_snapshot(server={"kv_cache_usage": 0.5})
    text = console.format_interval_json(snap)
    assert "\n" not in text
    assert orjson.loads(text) == asdict(snap)


def test_discovery_block_in_seed_order() -> None:
    text = console.format_discovery(
        "http://192.168.111.29:30080/v1/chat/completions",
        "vllm…",
        "http://192.168.111.29:30080/v1",
        "openai/gpt-oss-20b",
        100.0,
        ["openai/gpt-oss-20b"],
    )
    assert text == (
        "endpoint: http://192.168.111.29:30080/v1/chat/completions\n"
        "api_key: vllm…\n"
        "normalized endpoint: http://192.168.111.29:30080/v1\n"
        "found model: openai/gpt-oss-20b\n"
        "offload_size: 100"
    )


def test_discovery_lists_models_when_several() -> None:
    text = console.format_discovery("h:1", "(none)", "http://h:1/v1", "a", 50.5, ["a", "b"])
    assert text.splitlines()[-2:] == [
        "offload_size: 50.5",
        "models found: a, b (use --model to choose)",
    ]


def test_run_forever_note_is_the_seeds() -> None:
    assert console.RUN_FOREVER_NOTE == (
        "NOTE: tmesh-cli benchmark will run forever until you interrupt the process."
    )


def test_workload_block_seed_labels_then_ours() -> None:
    assert console.format_workload(SPEC, "server /tokenize", True, 10).splitlines() == [
        "Workload Specifications:",
        "Model: openai/gpt-oss-20b",
        "Number of Contexts: 61",
        "Number of Questions per Context: 61",
        "Max Inflight Requests (Load-Balancing): 20",
        "Input Length: 32000",
        "Output Length: 100",
        "Token Counting: server /tokenize (exact)",
        "Tokens the Server Adds per Request: 10 (BOS, chat template)",
        "KV Bytes per Token: 49152",
    ]
    assert "(approximate)" in console.format_workload(SPEC, "estimate", False)


def summary(warmup: float, verdict: str | None = None) -> RunSummary:
    overall = window(74, 1.19, 0.0035, 81783.9, 1513.3)
    overall.errors = {"timeout": 2}
    return run_summary(
        total_requests=74,
        failed_requests=2,
        qps=1.2333,
        input_token_throughput=39466.7,
        output_token_throughput=123.3,
        overall=overall,
        steady=window(50, 0.83, 0.0039, 98600.0, 942.3),
        warmup_seconds=warmup,
        cold_ttft=MetricStats(count=61, mean=1.5, p50=1.4, p90=2.0, p99=2.2),
        warm_ttft=MetricStats(count=13, mean=0.25, p50=0.2, p90=0.4, p99=0.5),
        rotations=1,
        verdict=verdict,
        steady_qps=1.6667,
    )


def rendered(s: RunSummary) -> str:
    out = io.StringIO()
    console.render_summary(s, Console(file=out, width=160, color_system=None))
    return out.getvalue()


def test_summary_table_contents() -> None:
    text = rendered(summary(30.0, verdict="revisits are served from offload"))
    for needle in (
        "QPS",
        "1.233",
        "1.667",
        "steady state (after 30 s)",
        "2 (timeout 2)",
        "39466.7 tokens/s",
        "TTFT cold (first visit)",
        "TTFT warm (revisit)",
        "Context rotations completed",
        "Verdict: revisits are served from offload",
    ):
        assert needle in text, needle


def test_summary_without_warmup_has_no_steady_column() -> None:
    text = rendered(summary(0.0))
    assert "steady" not in text
    assert "Verdict" not in text
    assert "Server" not in text


def test_summary_shows_server_view_when_present() -> None:
    s = summary(0.0)
    s.server = {"gpu_hit_rate": 0.25, "offload_load_bytes": 2048.0}
    text = rendered(s)
    assert "Server metrics over the run" in text
    assert "GPU 25.0%" in text
    assert "2.0 KiB" in text


def test_client_limit_warning_names_the_cause() -> None:
    from tmesh.bench.output.console import client_limit_warning
    from tmesh.results.records import ClientHealth

    assert client_limit_warning(ClientHealth(20.0, 20, 0.3, 4.0)) is None
    lagging = client_limit_warning(ClientHealth(12.0, 20, 0.3, 180.0))
    assert lagging is not None and "180 ms" in lagging
    slow_refill = client_limit_warning(ClientHealth(19.0, 20, 9.5, 3.0))
    assert slow_refill is not None and "9.5 ms" in slow_refill


def test_summary_says_why_it_stopped_and_what_its_abbreviations_mean() -> None:
    s = summary(0.0)
    s.stop_reason = "max-requests"
    s.error_messages = {"timeout": "no byte for 300 s"}
    text = " ".join(rendered(s).split())
    assert "--max-requests finished" in text
    assert "max-requests " not in text.replace("--max-requests", "")
    assert "TTFT: time to first token" in text and "ITL: inter-token latency" in text
    assert "warm (revisit): a later request for a context" in text
    assert "no byte from the server for --request-timeout" in text, "each error kind explained"


def test_lost_actors_are_said_in_every_block_and_the_summary() -> None:
    healthy = console.format_interval(seed_snapshot())
    lossy = console.format_interval(
        seed_snapshot(health=ClientHealth(inflight_mean=9.8, inflight_target=20, parts_lost=1))
    )
    assert "died" not in healthy
    assert lossy.startswith(SEED_BLOCK)
    assert "WARNING: 1 of the load's actors or workers died" in lossy
    s = summary(0.0)
    s.health = ClientHealth(inflight_mean=9.8, inflight_target=20, parts_lost=1)
    assert "Lost actors or workers" in rendered(s)
    assert "Lost actors or workers" not in rendered(summary(0.0))
