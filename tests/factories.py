"""Test data shared by several files: the seed's workload and labels, requests, run summaries."""

from __future__ import annotations

from typing import Any

from tmesh.results.records import MetricStats, RequestRecord, RunSummary, WindowStats, WorkloadSpec

SEED_SPEC = WorkloadSpec(
    model="openai/gpt-oss-20b",
    num_contexts=61,
    questions_per_context=61,
    max_inflight=20,
    input_length=32000,
    output_length=100,
    kv_bytes_per_token=49152,
)
"""The seed announcement's example: gpt-oss-20b sized for a 100 GB offload buffer."""

SEED_LABELS = [
    "Elapsed Time",
    "Total Number of Requests Processed",
    "QPS",
    "Global Average TTFT",
    "Global Average ITL",
    "Global Average Prefill Throughput",
    "Global Average Decode Throughput",
    "Requests Processed in Last 5 second Interval",
    "Interval Average TTFT",
    "Interval Average ITL",
    "Interval Average Prefill Throughput",
    "Interval Average Decode Throughput",
]
"""The seed's 5-second block, label by label in its order: people grep and parse these."""


def request(
    t0: float,
    ttft: float | None = None,
    decode: float = 0.0,
    tail: float = 0.0,
    **fields: Any,
) -> RequestRecord:
    """A request sent at `t0`: with `ttft`, its first token comes `ttft` later, its last after a
    further `decode` seconds and its stream ends `tail` after that. Any other `RequestRecord`
    field by keyword; ids default to 0 and `rotation` to `visit` (one pass per visit)."""
    fields.setdefault("index", 0)
    fields.setdefault("context_id", 0)
    fields.setdefault("question_id", 0)
    fields.setdefault("visit", 0)
    fields.setdefault("rotation", fields["visit"])
    if ttft is not None:
        fields.setdefault("t_first", t0 + ttft)
        fields.setdefault("t_last", t0 + ttft + decode)
        fields.setdefault("t_end", t0 + ttft + decode + tail)
    return RequestRecord(t0=t0, **fields)


def run_summary(**fields: Any) -> RunSummary:
    """A `summary.json` record: a finished one-minute run with nothing in it unless given."""
    empty: dict[str, Any] = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "elapsed": 60.0,
        "stop_reason": "duration",
        "total_requests": 0,
        "failed_requests": 0,
        "qps": 0.0,
        "input_token_throughput": 0.0,
        "output_token_throughput": 0.0,
        "overall": WindowStats(),
        "steady": WindowStats(),
        "warmup_seconds": 0.0,
        "cold_ttft": MetricStats(),
        "warm_ttft": MetricStats(),
        "rotations": 0,
    }
    return RunSummary(**{**empty, **fields})
