"""Real runs against the simulated engine, then report and compare them.

`tmesh-cli simulate` serves a `gpu-only` and a `cpu-offload` engine, shrunk so eight contexts of
2,000 tokens overflow the GPU cache (revisits miss) but fit the CPU tier (revisits load instead
of recomputing); `tmesh-cli benchmark --report` runs against each over loopback. The comparison
must find offload faster on both headline numbers, beyond the runs' own noise, and every figure
the pages show must be the one `summary.json` holds. A third run is stopped with Ctrl-C (SIGINT)
after its first progress block, and must still report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from fixtures.runs.pages import exact, tagged
from fixtures.runs.synthetic import summary_value

from tmesh.report.compare import compare_runs
from tmesh.report.compare_html import render_compare
from tmesh.report.html import render_report
from tmesh.report.load import load_run

CLI = (sys.executable, "-c", "import sys; from tmesh.cli import main; sys.exit(main())")
ENGINE = ("--port", "0", "--gpu-kv-tokens", "6144", "--max-model-len", "4096", "--seed", "1")
PROFILES = {"gpu-only": (), "cpu-offload": ("--cpu-offload-gb", "2")}
WORKLOAD = (
    *("--num-contexts", "8", "--input-length", "2000", "--output-length", "16"),
    *("--max-inflight", "2", "--duration", "5", "--warmup", "1", "--interval", "1"),
    *("--quiet", "--report"),
)
START_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0


@contextlib.asynccontextmanager
async def simulator(profile: str) -> AsyncIterator[str]:
    """A `tmesh-cli simulate` process on a free loopback port; yields its /v1 URL."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "simulate",
        "--profile",
        profile,
        *ENGINE,
        *PROFILES[profile],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        match = re.search(r"listening on (http://\S+/v1)", line.decode())
        assert match, f"simulator said: {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)


async def start_benchmark(
    url: str, folder: Path, workload: Iterable[str], stdout: int, stderr: int
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        "benchmark",
        "--endpoint",
        url,
        *workload,
        "--output-dir",
        str(folder),
        stdout=stdout,
        stderr=stderr,
    )


async def benchmark(profile: str, folder: Path) -> None:
    async with simulator(profile) as url:
        process = await start_benchmark(
            url, folder, WORKLOAD, asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
        assert process.returncode == 0, err.decode()[-2000:]


async def interrupted(folder: Path) -> None:
    """A run without an end, stopped by SIGINT once it printed its first progress block."""
    async with simulator("gpu-only") as url:
        unending = [a for a in WORKLOAD if a not in ("--duration", "5", "--quiet", "--report")]
        process = await start_benchmark(
            url, folder, unending, asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        )
        async for line in process.stdout:
            if line.startswith(b"Elapsed Time"):
                break
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), RUN_TIMEOUT)
        assert process.returncode == 0


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sim-runs")
    runs = {profile: root / profile for profile in PROFILES}
    runs["interrupted"] = root / "interrupted"

    async def all_runs() -> None:
        await asyncio.gather(
            *(benchmark(profile, runs[profile]) for profile in PROFILES),
            interrupted(runs["interrupted"]),
        )

    asyncio.run(all_runs())
    return runs


def test_benchmark_report_flag_writes_a_report_equal_to_summary(folders: dict[str, Path]) -> None:
    for folder in (folders[profile] for profile in PROFILES):
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["total_requests"] > 20
        page = (folder / "report.html").read_text()
        figures = tagged(page)
        assert len(figures) > 60
        for attrs, _ in figures:
            key = attrs["data-key"]
            if not key.startswith("errors."):
                assert exact(attrs) == summary_value(summary, key), key
        assert len(re.findall(r'<svg [^>]*class="chart"', page)) == 6


def test_offload_wins_the_comparison(folders: dict[str, Path]) -> None:
    gpu, cpu = (load_run(folders[name]) for name in ("gpu-only", "cpu-offload"))
    comparison = compare_runs([gpu, cpu], ["gpu-only", "cpu-offload"])
    qps, ttft = comparison.row("qps").cells[1], comparison.row("ttft.mean").cells[1]
    warm = comparison.row("warm_ttft.mean").cells[1]
    assert qps.ratio > 1.1 and qps.better and qps.significant
    assert ttft.ratio < 0.8 and ttft.better and ttft.significant
    assert warm.ratio < ttft.ratio
    assert comparison.verdict.startswith("cpu-offload served ")
    assert "cpu-offload is better on both numbers that matter most" in comparison.verdict
    page = render_compare(comparison)
    assert len(re.findall(r'<svg [^>]*class="chart"', page)) == 4
    assert "Server cache hit rate over time" in page


def test_run_stopped_with_ctrl_c_reports(folders: dict[str, Path]) -> None:
    run = load_run(folders["interrupted"])
    summary = json.loads((folders["interrupted"] / "summary.json").read_text())
    assert summary["stop_reason"] != "duration"
    assert run.summary.total_requests == summary["total_requests"] > 0
    page = render_report(run)
    assert f"stopped: {summary['stop_reason']}" in page
    for attrs, _ in tagged(page):
        key = attrs["data-key"]
        if not key.startswith("errors."):
            assert exact(attrs) == summary_value(summary, key), key
