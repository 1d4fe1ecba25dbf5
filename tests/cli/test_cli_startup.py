"""Before the run: mistakes found without a server, a server that is not up yet, and the order of
what the user reads. Driven through the real CLI process against loopback servers."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, cli_command, cli_env, read_run, run_cli

from tmesh.sim.server import start_simulator

# Each bad input must be refused this fast (the process's whole life, Python's start included).
# About 0.5 s on an idle machine (benchmarks/bad_inputs.py); a process slowed past the limit by
# other load is tried again, up to ATTEMPTS times in all, and judged by its fastest attempt.
REFUSED_WITHIN_S = 2.0
ATTEMPTS = 3


class Tripwire:
    """A loopback port that accepts connections and counts them, answering nothing."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@pytest.fixture
async def tripwire() -> AsyncIterator[Tripwire]:
    wire = Tripwire()
    server = await asyncio.start_server(wire._accept, "127.0.0.1", 0)
    wire.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield wire


def _bad_inputs(tmp: Path, busy_port: int) -> list[tuple[str, list[str], str]]:
    """(name, flags, a fragment of the one-line error) for a dozen mistakes a user makes."""
    a_file = tmp / "a-file"
    a_file.write_text("not a folder")
    old_run = tmp / "old-run"
    old_run.mkdir()
    (old_run / "config.json").write_text("{}")
    not_a_tokenizer = tmp / "tokenizer.json"
    not_a_tokenizer.write_text('{"model": "nothing"}')
    no_geometry = tmp / "config.json"
    no_geometry.write_text('{"model_type": "mystery"}')
    metrics_off = ["--metrics-url", "http://127.0.0.1:1/metrics", "--no-server-metrics"]
    return [
        ("unwritable output dir", ["--output-dir", "/proc/tmesh-cannot-write"], "cannot write"),
        ("output dir is a file", ["--output-dir", str(a_file)], "is a file, not a folder"),
        ("output dir holds a run", ["--output-dir", str(old_run)], "already holds a run"),
        ("missing tokenizer", ["--tokenizer", str(tmp / "nope.json")], "no such file"),
        ("broken tokenizer", ["--tokenizer", str(not_a_tokenizer)], "cannot load it"),
        ("missing model config", ["--model-config", str(tmp / "nope.json")], "cannot read it"),
        ("config without KV geometry", ["--model-config", str(no_geometry)], "num_hidden_layers"),
        ("warm-up longer than the run", ["--warmup", "30", "--duration", "10"], "--warmup 30"),
        ("metrics URL without metrics", metrics_off, "contradict"),
        ("key with a newline", ["--api-key", "sk-abc\n"], "--api-key"),
        ("exporter port taken", ["--prometheus-port", str(busy_port)], "cannot serve metrics"),
        ("profile without the demo", ["--profile", "gpu-only"], "add --demo"),
        ("actors without a cluster", ["--ray-actors", "2"], "--ray-actors needs --ray"),
        ("two ways to spread", ["--ray", "--workers", "2"], "choose one"),
    ]


async def test_bad_inputs_are_refused_before_any_request(tripwire: Tripwire, tmp_path) -> None:
    """Each one: exit 2, one line on stderr, nothing on stdout (no NOTE, no discovery), no
    connection to the server, no run folder left, well within two seconds."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cases = _bad_inputs(tmp_path, busy.getsockname()[1])
        timings: dict[str, list[float]] = {}
        for name, flags, fragment in cases:
            if "--output-dir" not in flags:
                flags = [*flags, "--output-dir", str(tmp_path / "never")]
            timings[name] = []
            slow = REFUSED_WITHIN_S
            while len(timings[name]) < ATTEMPTS and min(timings[name], default=slow) >= slow:
                started = time.monotonic()
                result = await run_cli(
                    "benchmark", "--endpoint", tripwire.url, *SMALL_WORKLOAD, *flags
                )
                timings[name].append(time.monotonic() - started)
                assert result.code == 2, (name, result.stdout, result.stderr)
                assert result.stdout == "", name
                lines = result.stderr.splitlines()
                assert len(lines) == 1 and lines[0].startswith("tmesh-cli: error: "), lines
                assert fragment in lines[0], (name, lines[0])
                assert tripwire.connections == 0, name
    assert len(cases) >= 10
    assert not (tmp_path / "never").exists()
    assert not Path("/proc/tmesh-cannot-write").exists()
    fastest = {name: min(seconds) for name, seconds in timings.items()}
    assert max(fastest.values()) < REFUSED_WITHIN_S, timings


async def test_an_offload_too_small_is_found_before_discovery(tripwire: Tripwire, tmp_path) -> None:
    """Sizing needs the server only to name the model's KV size: given it, sizing runs first."""
    result = await run_cli(
        "benchmark", "--endpoint", tripwire.url, "--offload-size", "0.001",
        "--kv-bytes-per-token", "49152", "--output-dir", str(tmp_path / "never-made"),
    )  # fmt: skip
    assert result.code == 2 and "holds no context" in result.stderr
    assert tripwire.connections == 0


async def test_a_default_run_folder_is_not_left_behind(tmp_path) -> None:
    """The default folder (`./tmesh-runs/<time>`) is checked by creating it, then removed."""
    proc = await asyncio.create_subprocess_exec(
        *cli_command("benchmark", "--endpoint", "http://127.0.0.1:1", "--tokenizer", "/nope"),
        cwd=tmp_path, env=cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err.decode()
    assert list(tmp_path.iterdir()) == []


def _reserved_port() -> socket.socket:
    """A loopback port bound but not listening: connections are refused, and no other process
    can take it until the socket is closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


_LEFT = re.compile(r"retrying for (\d+) s more \(--connect-timeout 60\)")


async def test_a_server_that_comes_up_late_gets_its_run(tmp_path) -> None:
    """The benchmark starts first; the server comes up 10 s later (by the CLI's own countdown)
    on the port the benchmark was given, and the run starts by itself."""
    reserved = _reserved_port()
    port = reserved.getsockname()[1]
    out = tmp_path / "run"
    proc = await asyncio.create_subprocess_exec(
        *cli_command(
            "benchmark", "--endpoint", f"127.0.0.1:{port}", "--connect-timeout", "60",
            *SMALL_WORKLOAD, "--max-requests", "6", "--output-dir", str(out),
        ),
        env=cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    said = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line, "".join(said)
        said.append(line)
        left = _LEFT.search(line)
        if left and int(left.group(1)) <= 50:
            break
    assert "waiting for the server: connection refused" in said[0]
    reserved.close()
    async with await start_simulator(CLI_PROFILE, port=port):
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert text.index("found model:") < text.index("Workload Specifications:")
    _, requests, _, summary = read_run(out)
    assert summary["total_requests"] >= 6 and requests
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["connect_timeout"] == 60


async def test_the_note_comes_once_the_run_has_started(tmp_path) -> None:
    """Discovery block, NOTE, Workload Specifications, then the blocks: and no NOTE at all when
    the run folder cannot be made."""
    async with await start_simulator(CLI_PROFILE) as sim:
        proc = await asyncio.create_subprocess_exec(
            *cli_command(
                "benchmark", "--endpoint", sim.url, *SMALL_WORKLOAD, "--interval", "1",
                "--output-dir", str(tmp_path / "run"),
            ),
            env=cli_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        seen = ""
        while "Elapsed Time" not in seen:
            seen += (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        proc.send_signal(2)
        await asyncio.wait_for(proc.communicate(), 60)
        blocked = await run_cli(
            "benchmark", "--endpoint", sim.url, "--output-dir", "/proc/tmesh-cannot-write"
        )
    order = [seen.index(marker) for marker in
             ("endpoint:", "NOTE: tmesh-cli benchmark will run forever", "Workload Specifications:",
              "Elapsed Time")]  # fmt: skip
    assert order == sorted(order)
    assert blocked.code == 2 and "NOTE" not in blocked.stdout + blocked.stderr
