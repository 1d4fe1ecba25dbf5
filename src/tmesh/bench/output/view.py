"""Where the benchmark's words go: results to stdout, diagnostics to stderr, in the chosen style.

`--quiet`, `--json` and `--live` change only this class, never what is measured or written to files,
and stdout carries nothing but results so `| tee` and pipes stay clean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import orjson
from rich.console import Console

from tmesh.bench.output import console as fmt
from tmesh.results.records import IntervalSnapshot, RunSummary

PIPE_WIDTH = 120


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
        self._stdout = stdout or sys.stdout
        self._stderr = stderr or sys.stderr
        self._live = fmt.LiveView(duration) if live and not json else None

    def out(self, text: str) -> None:
        """A result block (discovery, workload): stdout, or stderr when stdout is JSON."""
        if self.quiet:
            return
        target = self._stderr if self.json else self._stdout
        print(text, file=target, flush=True)

    def progress(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self._stderr, flush=True)

    def error(self, text: str) -> None:
        print(f"tmesh-cli: error: {text}", file=self._stderr, flush=True)

    def start(self) -> None:
        if self._live:
            self._live.start()

    def interval(self, snap: IntervalSnapshot) -> None:
        if self.json:
            print(fmt.format_interval_json(snap), file=self._stdout, flush=True)
        elif self._live:
            self._live.update(snap)
        elif not self.quiet:
            print(fmt.format_interval(snap) + "\n", file=self._stdout, flush=True)

    def answer(self, text: str, document: dict[str, Any]) -> None:
        """A final answer (of several runs): on stdout even with `--quiet`; JSON with `--json`."""
        if self.json:
            print(orjson.dumps(document).decode(), file=self._stdout, flush=True)
        else:
            print(text, file=self._stdout, flush=True)

    def summary(self, summary: RunSummary, run_dir: Path) -> None:
        if self._live:
            self._live.stop()
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
        self._stdout.flush()
        self._stderr.flush()
