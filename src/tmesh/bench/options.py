"""Everything `tmesh-cli benchmark` was asked to do, as one plain record.

The CLI fills it from flags; the orchestrator reads it; `config.json` stores it (key masked) so a
run can be repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchmarkOptions:
    endpoint: str | None = None
    api_key: str | None = None
    model: str | None = None
    api: str = "completions"
    offload_size: float = 100.0
    kv_bytes_per_token: int | None = None
    model_config: Path | None = None
    tokenizer: str | None = None
    num_contexts: int | None = None
    questions_per_context: int | None = None
    max_inflight: int | None = None
    input_length: int = 32000
    output_length: int = 100
    seed: int = 0
    duration: float | None = None
    max_requests: int | None = None
    warmup: float = 0.0
    request_timeout: float = 300.0
    output_dir: Path | None = None
    insecure: bool = False
    demo: bool = False
    profile: str = "cpu-offload"
    quiet: bool = False
    json: bool = False
    live: bool = False
    report: bool = False
    interval: float = 5.0
    metrics_url: str | None = None
    server_metrics: bool = True
    prometheus_port: int | None = None
    max_records: int | None = None
    max_consecutive_errors: int | None = None
    grace: float = 5.0
    workers: int = 1
