"""The run goes on through faults, counts them, and survives a server restart."""

from __future__ import annotations

import asyncio
import json

from chaos_server import ChaosServer
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, read_run, read_until, run_cli, start_cli

from tmesh.sim.faults import FaultConfig
from tmesh.sim.server import start_simulator


async def test_mixed_faults_are_counted_and_the_run_goes_on(tmp_path) -> None:
    faults = FaultConfig(
        error_rate=0.1,
        error_body="html",
        rate_429=0.05,
        retry_after=0.2,
        cut_rate=0.1,
        cut_after=3,
        malformed_rate=0.05,
        error_in_stream_rate=0.05,
        seed=7,
    )
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE, faults=faults) as handle:
        result = await run_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--max-requests", "150",
            "--interval", "1", "--output-dir", str(out),
        )  # fmt: skip
        injected = dict(handle.faults.counts)
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    _, requests, _, summary = read_run(out)
    kinds: dict[str, int] = {}
    for r in requests:
        if r["error"]:
            kinds[r["error"]] = kinds.get(r["error"], 0) + 1
    assert set(kinds) == {"http_5xx", "http_429", "stream_cut", "malformed"}
    assert summary["failed_requests"] == sum(kinds.values())
    # The server also saw the two one-token set-up probes (capabilities, the tokens it adds to a
    # request), which a fault may have hit.
    assert sum(injected.values()) - sum(kinds.values()) in (0, 1, 2)
    assert summary["overall"]["errors"] == kinds
    assert summary["total_requests"] == sum(1 for r in requests if r["error"] is None)
    ok_ttfts = [r["ttft"] for r in requests if r["error"] is None]
    assert all(t is not None for t in ok_ttfts)
    assert "Errors:" in result.stdout and "stream_cut" in result.stdout


async def test_connections_dropped_anywhere_and_an_outage_never_crash_the_run(tmp_path) -> None:
    """A few percent of streams closed at every point of an exchange, then every connection
    closed (including ones just accepted) for a while: all counted errors, no internal error."""
    server = ChaosServer(seed=5, fault_rate=0.05, tokens=12, outage_at=80, outage_events=40)
    out = tmp_path / "run"
    await server.start()
    try:
        result = await run_cli(
            "benchmark", "--endpoint", server.url, *SMALL_WORKLOAD, "--max-inflight", "8",
            "--max-requests", "300", "--interval", "1", "--output-dir", str(out),
        )  # fmt: skip
    finally:
        await server.close()
    assert result.code == 0, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    _, requests, _, summary = read_run(out)
    kinds = {r["error"] for r in requests if r["error"]}
    assert "connect" in kinds and kinds <= {"connect", "stream_cut"}, kinds
    assert summary["failed_requests"] == sum(1 for r in requests if r["error"])
    assert server.counts["outage"] + server.counts["outage_accept"] == 40
    assert summary["stop_reason"] == "max-requests"


async def test_run_resumes_after_server_restart(tmp_path) -> None:
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE) as handle:
        proc = await start_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--interval", "1",
            "--duration", "8", "--output-dir", str(out),
        )  # fmt: skip
        await read_until(proc.stdout, "Elapsed Time")
        await handle.pause()
        await read_until(proc.stdout, "connect")
        await handle.resume()
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    _, requests, _, summary = read_run(out)
    errors = [r for r in requests if r["error"]]
    assert errors and {r["error"] for r in errors} <= {"connect", "stream_cut"}
    last_error = max(r["t_end"] for r in errors)
    recovered = [r for r in requests if r["error"] is None and r["t0"] > last_error]
    assert recovered, "no request succeeded after the server came back"
    assert summary["stop_reason"] == "duration"


async def test_server_gone_for_good_exits_1_with_summary(tmp_path) -> None:
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE) as handle:
        proc = await start_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--interval", "1",
            "--max-consecutive-errors", "20", "--output-dir", str(out),
        )  # fmt: skip
        await read_until(proc.stdout, "Elapsed Time")
        await handle.stop()
        _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "consecutive requests failed" in stderr.decode().splitlines()[-1]
    assert "Traceback" not in stderr.decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "errors"
    assert summary["failed_requests"] >= 20


async def test_a_request_the_server_always_refuses_stops_the_run_with_its_message(
    tmp_path,
) -> None:
    """Every request answered 400 (a prompt too long, a rejected field): within seconds the run
    stops with the server's own message, exit 1, instead of hammering the server for a minute."""
    faults = FaultConfig(error_rate=1.0, error_statuses=(400,), error_body="json", seed=1)
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE, faults=faults) as handle:
        result = await run_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--interval", "1",
            "--duration", "60", "--output-dir", str(out),
        )  # fmt: skip
    assert result.code == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "the first 5 requests all failed with the same client error: HTTP 400" in last
    assert "Traceback" not in result.stderr
    _, requests, _, summary = read_run(out)
    assert summary["stop_reason"] == "errors"
    assert summary["elapsed"] < 30
    assert summary["rotations"] == 0
    assert summary["error_messages"]["http_4xx"].startswith("HTTP 400")
    assert "First error of each kind" in result.stdout
    assert "HTTP 400 Bad Request" in result.stdout.split("First error of each kind")[1]
    assert len(requests) < 20


async def test_a_run_in_which_nothing_succeeded_never_exits_0(tmp_path) -> None:
    faults = FaultConfig(error_rate=1.0, error_statuses=(503,), seed=1)
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE, faults=faults) as handle:
        result = await run_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--max-requests", "6",
            "--output-dir", str(out),
        )  # fmt: skip
    assert result.code == 1, result.stderr
    assert "no request succeeded (6 failed: http_5xx 6); first error: HTTP 503" in result.stderr
