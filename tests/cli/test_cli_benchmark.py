"""`tmesh-cli benchmark` end to end over loopback HTTP against the simulated engine."""

from __future__ import annotations

import re

import pytest
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, read_run, run_cli
from factories import SEED_LABELS

from tmesh.sim.server import start_simulator


@pytest.fixture
async def sim():
    async with await start_simulator(CLI_PROFILE) as handle:
        yield handle


def _blocks(stdout: str) -> list[list[str]]:
    """The 5-second blocks: runs of `Label: value` lines starting at `Elapsed Time`."""
    blocks, current = [], None
    for line in stdout.splitlines():
        if line.startswith("Elapsed Time:"):
            current = []
            blocks.append(current)
        if current is not None and ":" in line:
            current.append(line.split(":", 1)[0])
        elif current is not None and not line.strip():
            current = None
    return blocks


@pytest.mark.parametrize("api", ["completions", "chat"])
async def test_benchmark_prints_seed_blocks_and_writes_files(sim, tmp_path, api) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url + "/v1/chat/completions", "--api", api,
        *SMALL_WORKLOAD, "--duration", "10.5", "--output-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    stdout = result.stdout
    assert f"normalized endpoint: {sim.url}/v1" in stdout
    assert "found model: openai/gpt-oss-20b" in stdout
    assert "api_key: (none)" in stdout
    assert "Workload Specifications:" in stdout
    assert "Number of Contexts: 4" in stdout
    assert "KV Bytes per Token: 49152" in stdout
    blocks = _blocks(stdout)
    assert len(blocks) >= 2
    for block in blocks[:2]:
        assert [label for label in block if label in SEED_LABELS] == SEED_LABELS
    assert "Traceback" not in result.stderr

    config, requests, intervals, summary = read_run(out)
    assert config["workload"]["api"] == api
    assert len(intervals) >= 2
    ok = [r for r in requests if r["error"] is None]
    assert len(ok) == summary["total_requests"] > 10
    assert all(r["completion_tokens"] == 12 and r["usage_reported"] for r in ok)
    expected = {(r["context_id"], r["question_id"]) for r in ok}
    assert len(expected) > 4
    assert summary["stop_reason"] == "duration"
    assert summary["rotations"] >= 1
    qps = float(re.search(r"^QPS: ([0-9.]+)", stdout, re.M).group(1))
    assert qps > 0


async def test_prompt_tokens_match_the_plan(sim, tmp_path) -> None:
    """The server's usage agrees with what the prompt builder planned, token for token."""
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--max-requests", "12",
        "--output-dir", str(out), "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    _, requests, _, summary = read_run(out)
    assert len(requests) == 12 == summary["total_requests"]
    by_context: dict[int, set[int]] = {}
    for r in requests:
        by_context.setdefault(r["context_id"], set()).add(r["prompt_tokens"])
    assert sorted(by_context) == [0, 1, 2, 3]
    assert [r["context_id"] for r in sorted(requests, key=lambda r: r["index"])][:8] == [
        0, 1, 2, 3, 0, 1, 2, 3,
    ]  # fmt: skip
    for tokens in by_context.values():
        assert all(1500 < t < 1500 + 40 for t in tokens)
    assert all(r["usage_reported"] for r in requests)
    assert [r["prompt_tokens"] for r in requests] == [r["planned_prompt_tokens"] for r in requests]


async def test_max_requests_and_json_output(sim, tmp_path) -> None:
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--duration", "3",
        "--interval", "1", "--json", "--output-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    import json

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) >= 3
    assert "summary" in lines[-1]
    assert all("elapsed" in line for line in lines[:-1])
    assert "Workload Specifications:" in result.stderr


async def test_workers_share_the_workload_and_merge_exactly(sim, tmp_path) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--max-inflight", "4",
        "--workers", "2", "--max-requests", "40", "--interval", "1", "--output-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    _, requests, _, summary = read_run(out)
    assert len(requests) == 40 == summary["total_requests"]
    assert {r["worker"] for r in requests} == {0, 1}
    assert sorted(r["index"] for r in requests) == list(range(40))
    assert all(r["context_id"] % 2 == r["worker"] for r in requests)
    ttfts = sorted(r["ttft"] for r in requests)
    assert summary["overall"]["ttft"]["max"] == pytest.approx(ttfts[-1], rel=1e-6)
    assert summary["overall"]["ttft"]["mean"] == pytest.approx(sum(ttfts) / 40, rel=1e-6)
    ideal = summary["server"]
    assert ideal["ideal_infinite_hit_rate"] == ideal["ideal_lru_hit_rate"] > 0.5, "no predictions"


async def test_verdict_from_client_ttft_without_server_metrics(sim, tmp_path) -> None:
    out = tmp_path / "run"
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--max-requests", "24",
        "--no-server-metrics", "--quiet", "--output-dir", str(out),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    _, _, intervals, summary = read_run(out)
    assert summary["verdict"]
    assert summary["server"] is None
    assert all(snap["server"] is None for snap in intervals)
