"""Where the benchmark's words go: results to stdout, diagnostics to stderr, in the chosen style.

`--quiet`, `--json` and `--live` change only this class, never what is measured or written to files,
and stdout carries nothing but results so `| tee` and pipes stay clean. `--live` shows the
dashboard only when stdout is a terminal large enough for it; anywhere else it prints the text
blocks, which is what a file or a pipe can hold.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson
from rich.console import Console

from tmesh.bench.output import console as fmt
from tmesh.bench.output.live import MIN_SIZE, Dashboard, fits
from tmesh.bench.output.panels import PANELS
from tmesh.bench.output.traffic_panels import TRAFFIC_PANELS
from tmesh.results.records import IntervalSnapshot, RunSummary

PIPE_WIDTH = 120


def _without_size(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment less COLUMNS and LINES: exported once, they would pin the dashboard to
    the size the terminal had then (rich prefers them to the terminal's own), through every
    resize since."""
    return {key: value for key, value in environ.items() if key not in ("COLUMNS", "LINES")}


class View:
    def __init__(
        self,
        quiet: bool = False,
        json: bool = False,
        live: bool = False,
        duration: float | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.quiet, self.json = quiet, json
        self.live = live and not json
        self.duration = duration
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self._dashboard: Dashboard | None = None
        self._held: list[str] = []
        self._countdown = False

    def out(self, text: str) -> None:
        """A result block (discovery, workload): stdout, or stderr when stdout is JSON."""
        if self.quiet:
            return
        self._end_countdown()
        target = self._stderr if self.json else self._stdout
        print(text, file=target, flush=True)

    def progress(self, text: str) -> None:
        """A diagnostic line on stderr; while the dashboard holds the screen, shown in it and
        printed once the screen is given back."""
        if self.quiet:
            return
        if self._dashboard is not None:
            self._dashboard.note(text)
            self._held.append(text)
            return
        self._end_countdown()
        print(text, file=self._stderr, flush=True)

    def countdown(self, text: str) -> None:
        """A line that replaces the previous one on a terminal (a line each elsewhere)."""
        if self.quiet:
            return
        if self._stderr.isatty():
            print(f"\r{text}\x1b[K", end="", file=self._stderr, flush=True)
            self._countdown = True
        else:
            print(text, file=self._stderr, flush=True)

    def error(self, text: str) -> None:
        self._end_live()
        self._end_countdown()
        print(f"tmesh-cli: error: {text}", file=self._stderr, flush=True)

    def start(self) -> None:
        """The run starts: bring up the dashboard if `--live` asked for it and it can be shown."""
        if not self.live or self.quiet:
            return
        screen = Console(file=self._stdout, _environ=_without_size(os.environ))
        width, height = screen.size
        if not screen.is_terminal:
            self.progress("--live: stdout is not a terminal; printing the text blocks instead")
        elif not fits(width, height):
            self.progress(
                f"--live: the terminal is {width}x{height}, the dashboard needs "
                f"{MIN_SIZE[0]}x{MIN_SIZE[1]}; printing the text blocks instead"
            )
        else:
            self._dashboard = Dashboard(self.duration, screen, (*PANELS, *TRAFFIC_PANELS))
            self._dashboard.start()

    def interval(self, snap: IntervalSnapshot) -> None:
        if self.json:
            print(fmt.format_interval_json(snap), file=self._stdout, flush=True)
        elif self._dashboard is not None:
            self._dashboard.update(snap)
        elif not self.quiet:
            print(fmt.format_interval(snap) + "\n", file=self._stdout, flush=True)

    def answer(self, text: str, document: dict[str, Any]) -> None:
        """A final answer (of several runs): on stdout even with `--quiet`; JSON with `--json`."""
        if self.json:
            print(orjson.dumps(document).decode(), file=self._stdout, flush=True)
        else:
            print(text, file=self._stdout, flush=True)

    def summary(self, summary: RunSummary, run_dir: Path) -> None:
        self._end_live()
        if self.json:
            line = orjson.dumps({"summary": summary, "run_dir": str(run_dir)}).decode()
            print(line, file=self._stdout, flush=True)
            return
        table_console = Console(file=self._stdout, highlight=False, width=self._width())
        fmt.render_summary(summary, table_console)
        print(f"results: {run_dir}", file=self._stdout, flush=True)

    def _width(self) -> int | None:
        """A terminal's own width; 120 columns for files and pipes (rich would assume 80 and wrap
        every number of the summary table)."""
        return None if self._stdout.isatty() else PIPE_WIDTH

    def flush(self) -> None:
        """Everything out, the terminal's own screen back: the process may end right after."""
        self._end_live()
        self._stdout.flush()
        self._stderr.flush()

    def _end_live(self) -> None:
        """Give the screen back and print what was said on stderr while the dashboard had it."""
        if self._dashboard is None:
            return
        self._dashboard.stop()
        self._dashboard = None
        for text in self._held:
            print(text, file=self._stderr, flush=True)
        self._held.clear()

    def _end_countdown(self) -> None:
        if self._countdown:
            print(file=self._stderr, flush=True)
            self._countdown = False
