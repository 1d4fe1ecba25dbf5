"""`--live` in a real terminal: tmux runs the CLI in a pseudo-terminal and its screen is read
back as text, as a user would see it (panels, updates, a resize, the summary after)."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import CLI_PROFILE, SMALL_WORKLOAD, read_run

from tmesh.sim.server import start_simulator

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
SCREEN_WAIT_S = 60.0
POLL_S = 0.2


class Terminal:
    """One tmux session on a server of its own (never the user's), `width` x `height`."""

    def __init__(self, name: str, width: int, height: int) -> None:
        self.socket = f"tmesh-test-{os.getpid()}-{name}"
        self.width, self.height = width, height

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def run(self, command: list[str], env: dict[str, str]) -> None:
        exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        line = f"env {exports} {shlex.join(command)}"
        self.tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", str(self.width),
            "-y", str(self.height), "-c", os.getcwd(), line,
        )  # fmt: skip
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def history(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t", "-S", "-200")

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal("live", 120, 40)
    yield term
    term.close()


async def wait_for(term: Terminal, holds: Callable[[str], bool], what: str) -> str:
    """Read the screen until `holds` is true of it: the CLI's own output is the signal."""
    deadline = time.monotonic() + SCREEN_WAIT_S
    screen = ""
    while time.monotonic() < deadline:
        screen = await asyncio.to_thread(term.screen)
        if holds(screen):
            return screen
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"never saw {what}; the screen was:\n{screen}")


def _requests_done(screen: str) -> int:
    for line in screen.splitlines():
        if "Total Number of Requests Processed:" in line:
            return int(line.split(":", 1)[1].split()[0])
    return -1


async def test_live_dashboard_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    out = tmp_path / "run"
    async with await start_simulator(CLI_PROFILE) as sim:
        command = [
            sys.executable, "-m", "tmesh.cli", "benchmark", "--endpoint", sim.url,
            *SMALL_WORKLOAD, "--interval", "1", "--duration", "12", "--live",
            "--output-dir", str(out),
        ]  # fmt: skip
        env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "TERM": "xterm-256color"}
        terminal.run(command, env)
        first = await wait_for(terminal, lambda s: _requests_done(s) > 0, "a first interval")
        for panel in ("tmesh benchmark", "s left", "Over the run", "Last interval", "QPS",
                      "TTFT first visit", "in-flight", "Errors by kind"):  # fmt: skip
            assert panel in first, panel
        later = await wait_for(
            terminal, lambda s: _requests_done(s) > _requests_done(first), "the panels update"
        )
        assert later != first
        terminal.resize(70, 20)
        await wait_for(terminal, lambda s: "enlarge the terminal to 80x24" in s, "the small view")
        terminal.resize(120, 40)
        await wait_for(terminal, lambda s: "Over the run" in s, "the dashboard after a resize")
        end = await wait_for(terminal, lambda s: "results:" in s, "the summary")
    assert "tmesh benchmark summary" in terminal.history()
    assert "Over the run" not in end, "the terminal's own screen is back"
    _, requests, intervals, summary = read_run(out)
    assert summary["stop_reason"] == "duration"
    assert len(intervals) >= 10 and requests
