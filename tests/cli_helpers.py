"""Drive `tmesh-cli` as a user would: a real subprocess, real signals, real loopback servers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from tmesh.results.rundir import request_files
from tmesh.sim.profiles import PROFILES

SMALL_WORKLOAD = [
    "--num-contexts", "4",
    "--input-length", "1500",
    "--output-length", "12",
    "--max-inflight", "2",
]  # fmt: skip


# Fast enough to finish many requests per interval, slow enough that TTFT is not just noise.
CLI_PROFILE = replace(PROFILES["fast"], t_fixed_s=2e-3)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tmesh.cli", *args]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "TMESH_API_KEY")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def run_cli(*args: str, timeout: float = 90.0, env: dict[str, str] | None = None) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *cli_command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or cli_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *cli_command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or cli_env(),
    )


async def read_until(stream: asyncio.StreamReader, marker: str, timeout: float = 60.0) -> str:
    """Collect output lines until one holds `marker`: wait on the process's own output, no sleep."""
    seen: list[str] = []

    async def scan() -> None:
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {marker!r}:\n{''.join(seen)}")
            seen.append(line.decode())
            if marker in seen[-1]:
                return

    await asyncio.wait_for(scan(), timeout)
    return "".join(seen)


def read_run(path: Path) -> tuple[dict, list[dict], list[dict], dict]:
    """The four files of a run, parsed strictly (any invalid line fails the test)."""
    config = json.loads((path / "config.json").read_text())
    requests = [
        json.loads(line) for file in request_files(path) for line in file.read_text().splitlines()
    ]
    intervals = [json.loads(line) for line in (path / "intervals.jsonl").read_text().splitlines()]
    summary = json.loads((path / "summary.json").read_text())
    return config, requests, intervals, summary
