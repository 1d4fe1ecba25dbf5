"""Never lose a run: bad input, signals and secrets, driven through the real CLI process."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from cli_helpers import (
    CLI_PROFILE,
    SMALL_WORKLOAD,
    Result,
    cli_command,
    cli_env,
    read_run,
    read_until,
    run_cli,
    start_cli,
)
from net_helpers import serve_app

from tmesh.sim.faults import FaultConfig
from tmesh.sim.server import start_simulator

SECRET = "sk-live-0123456789abcdef0123456789"


@pytest.fixture
async def sim():
    async with await start_simulator(CLI_PROFILE) as handle:
        yield handle


def _one_line_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert lines, "expected an error message on stderr"
    assert lines[-1].startswith("tmesh-cli"), result.stderr
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "--endpoint is required"),
        (["--endpoint", "URL", "--num-contexts", "0"], "must be > 0"),
        (["--endpoint", "URL", "--max-inflight", "-3"], "must be > 0"),
        (["--endpoint", "URL", "--duration", "ten"], "not a valid float"),
        (["--endpoint", "URL", "--api", "responses"], "invalid choice"),
        (["--endpoint", "URL", "--quiet", "--json"], "at most one of"),
        (["--endpoint", "http://"], "http://"),
        (["--endpoint", "ftp://example.org/v1"], "ftp"),
        (["--endpoint", "URL", "--input-length", "500000"], "max_model_len"),
        (["--endpoint", "URL", "--output-dir", "/proc/tmesh-cannot-write"], "tmesh-cannot-write"),
        (["--endpoint", "URL", "--model", "no-such-model"], "no-such-model"),
        (["--endpoint", "URL", "--tokenizer", "/nonexistent/tokenizer.json"], "tokenizer"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(sim, tmp_path, args, expected) -> None:
    args = [a.replace("URL", sim.url) for a in args]
    if "--output-dir" not in args:
        args += ["--output-dir", str(tmp_path / "run")]
    result = await run_cli("benchmark", *SMALL_WORKLOAD, *args, "--duration", "2")
    assert result.code == 2, (result.stdout, result.stderr)
    assert expected in _one_line_error(result)


async def test_server_down_is_one_line_and_exit_2(unused_tcp_port, tmp_path) -> None:
    result = await run_cli(
        "benchmark", "--endpoint", f"127.0.0.1:{unused_tcp_port}", "--connect-timeout", "1"
    )
    assert result.code == 2
    line = _one_line_error(result)
    assert f"127.0.0.1:{unused_tcp_port}" in line
    assert "refused" in line.lower()


async def _wait_and_signal(proc, sig: signal.Signals) -> None:
    await read_until(proc.stdout, "Elapsed Time")
    proc.send_signal(sig)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_signal_stops_with_summary_and_files(sim, tmp_path, sig) -> None:
    out = tmp_path / "run"
    proc = await start_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--interval", "1",
        "--output-dir", str(out),
    )  # fmt: skip
    await _wait_and_signal(proc, sig)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    assert "tmesh benchmark summary" in stdout.decode()
    _, requests, intervals, summary = read_run(out)
    assert summary["stop_reason"] == "signal"
    assert summary["total_requests"] == sum(1 for r in requests if r["error"] is None) > 0
    assert intervals


async def test_second_sigint_exits_130_with_valid_files(tmp_path) -> None:
    stalling = FaultConfig(stall_rate=1.0, stall_seconds=60.0)
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE, faults=stalling) as handle:
        proc = await start_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--interval", "1",
            "--output-dir", str(out),
        )  # fmt: skip
        await _wait_and_signal(proc, signal.SIGINT)
        await read_until(proc.stderr, "stopping")
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 130
    config, _, _, summary = read_run(out)
    assert summary["stop_reason"] in ("signal", "interrupted")
    assert config["workload"]["num_contexts"] == 4


def _everything_written(result, run_dir: Path) -> str:
    files = "".join(p.read_text() for p in run_dir.rglob("*") if p.is_file())
    return result.stdout + result.stderr + files


async def test_api_key_never_appears_anywhere(tmp_path) -> None:
    async with await start_simulator(CLI_PROFILE, api_key=SECRET) as handle:
        flag_run = await run_cli(
            "benchmark", "--endpoint", handle.url, "--api-key", SECRET, *SMALL_WORKLOAD,
            "--max-requests", "6", "--output-dir", str(tmp_path / "a"), "--report",
        )  # fmt: skip
        env = cli_env() | {"TMESH_API_KEY": SECRET}
        env_run = await run_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--max-requests", "6",
            "--output-dir", str(tmp_path / "b"), env=env,
        )  # fmt: skip
        wrong = await run_cli(
            "benchmark", "--endpoint", handle.url, "--api-key", SECRET[:-1] + "X",
            "--output-dir", str(tmp_path / "c"),
        )  # fmt: skip
    assert flag_run.code == 0, flag_run.stderr
    assert env_run.code == 0, env_run.stderr
    assert "api_key: sk-l…" in flag_run.stdout
    for result, run_dir in ((flag_run, tmp_path / "a"), (env_run, tmp_path / "b")):
        assert SECRET not in _everything_written(result, run_dir)
        assert SECRET[4:12] not in _everything_written(result, run_dir)
    assert (tmp_path / "a" / "report.html").exists()
    assert wrong.code == 2
    line = _one_line_error(wrong)
    assert "401" in line and "--api-key" in line
    assert SECRET[4:12] not in wrong.stdout + wrong.stderr
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["api_key"] == "sk-l…"


async def test_unknown_model_needs_a_flag_unless_contexts_are_given(tmp_path) -> None:
    unknown = replace(CLI_PROFILE, model="acme/mystery-7b")
    async with await start_simulator(unknown) as handle:
        refused = await run_cli(
            "benchmark", "--endpoint", handle.url, "--output-dir", str(tmp_path / "a")
        )
        sized_by_hand = await run_cli(
            "benchmark", "--endpoint", handle.url, *SMALL_WORKLOAD, "--max-requests", "4",
            "--output-dir", str(tmp_path / "b"),
        )  # fmt: skip
    assert refused.code == 2
    line = _one_line_error(refused)
    assert "--kv-bytes-per-token" in line and "--model-config" in line
    assert sized_by_hand.code == 0, sized_by_hand.stderr
    assert "found model: acme/mystery-7b" in sized_by_hand.stdout


async def test_prometheus_exporter_serves_live_metrics(sim, tmp_path, unused_tcp_port) -> None:
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    proc = await start_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--interval", "1",
        "--prometheus-port", str(unused_tcp_port), "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    await read_until(proc.stdout, "Elapsed Time")
    url = f"http://127.0.0.1:{unused_tcp_port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 60)
    samples = {
        (s.name, s.labels.get("status")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("tmesh_requests_total", "ok")] > 0
    assert samples[("tmesh_qps", None)] > 0
    assert any(name == "tmesh_ttft_seconds_count" for name, _ in samples)


def _models_app(status: int, body: str, content_type: str = "application/json") -> web.Application:
    async def models(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    return app


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (404, "not here", "text/plain", "404"),
        (403, '{"error": "forbidden"}', "application/json", "--api-key"),
        (200, "<html>proxy login</html>", "text/html", "JSON"),
        (200, '{"data": []}', "application/json", "no model"),
        (200, '{"models": ["x"]}', "application/json", "data"),
    ],
)
async def test_discovery_failures_exit_2_naming_cause_and_url(
    status, body, content_type, expected
) -> None:
    async with serve_app(_models_app(status, body, content_type)) as url:
        result = await run_cli("benchmark", "--endpoint", url)
    assert result.code == 2
    line = _one_line_error(result)
    assert expected.lower() in line.lower()
    assert f"{url}/v1/models" in line


def _file_size_limit(limit: int):
    """A child's preexec hook: writes past `limit` bytes fail with EFBIG, as on a full disk."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


async def test_run_folder_that_stops_taking_writes_ends_the_run_in_one_line(sim, tmp_path) -> None:
    out = tmp_path / "run"
    proc = await asyncio.create_subprocess_exec(
        *cli_command(
            "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--interval", "1",
            "--output-dir", str(out),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        preexec_fn=_file_size_limit(48_000),
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    result = Result(proc.returncode or 0, stdout.decode(), stderr.decode())
    assert result.code == 1, result.stderr
    assert "too large" in _one_line_error(result).lower()
    assert "tmesh benchmark summary" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "write-error"
    assert summary["total_requests"] > 0


async def test_report_that_cannot_be_written_is_one_line(sim, tmp_path) -> None:
    out = tmp_path / "run"
    (out / "report.html").mkdir(parents=True)
    result = await run_cli(
        "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--max-requests", "4",
        "--output-dir", str(out), "--report",
    )  # fmt: skip
    assert result.code == 1, result.stderr
    line = _one_line_error(result)
    assert "cannot write the report" in line and "internal error" not in line
    assert json.loads((out / "summary.json").read_text())["total_requests"] == 4


async def test_prometheus_port_in_use_is_one_line_and_exit_2(sim, tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await run_cli(
            "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--max-requests", "2",
            "--prometheus-port", str(port), "--output-dir", str(tmp_path / "run"),
        )  # fmt: skip
    assert result.code == 2
    assert str(port) in _one_line_error(result)
