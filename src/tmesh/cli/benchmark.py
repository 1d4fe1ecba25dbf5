"""`tmesh-cli benchmark`: options from flags, the demo engine and the end-of-run report wired
around the benchmark, and every way it can end turned into an exit code.

The benchmark pipeline (`tmesh.bench`) knows nothing of the simulator or the report: this module
starts the simulated engine for `--demo` and writes `report.html` for `--report`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tmesh.bench.endpoint.discovery import DiscoveryError, EndpointError
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.console import RUN_FOREVER_NOTE, format_workload
from tmesh.bench.output.exporter import ExporterError
from tmesh.bench.output.view import View
from tmesh.bench.run import BenchmarkError, Outcome, measure, prepare
from tmesh.bench.workload.blocks import BlockError
from tmesh.bench.workload.prompts import PromptError
from tmesh.bench.workload.sizing import SizingError
from tmesh.bench.workload.tokens import TokenizerError
from tmesh.bench.workload.trace import TraceError
from tmesh.cli.demo import DEMO_DURATION_S, demo_engine
from tmesh.cli.flags import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    UsageError,
    add_option_flags,
    options_from_namespace,
)
from tmesh.results.rundir import RunFilesError
from tmesh.sim.profiles import DEFAULT_PROFILE

KEY_VARIABLES = ("TMESH_API_KEY", "OPENAI_API_KEY")
SETUP_ERRORS = (
    BenchmarkError,
    DiscoveryError,
    EndpointError,
    ExporterError,
    PromptError,
    RunFilesError,
    SizingError,
    TokenizerError,
    TraceError,
    BlockError,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option_flags(parser, BenchmarkOptions, shown={"profile": DEFAULT_PROFILE})


def options_from_args(args: argparse.Namespace, **given: Any) -> BenchmarkOptions:
    """The options the flags give; the key falls back on the environment. `given` sets options
    whose flags mean something else in the calling command (a sweep's lists of values)."""
    key = args.api_key or next(filter(None, map(os.environ.get, KEY_VARIABLES)), None)
    options: BenchmarkOptions = options_from_namespace(BenchmarkOptions, args, api_key=key, **given)
    return options


def run_command(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    if not opts.demo and not opts.endpoint:
        raise UsageError("--endpoint is required (or use --demo for the built-in simulated engine)")
    if sum((opts.quiet, opts.json, opts.live)) > 1:
        raise UsageError("choose at most one of --quiet, --json, --live")
    return run(opts)


def run(opts: BenchmarkOptions) -> int:
    view = View(opts.quiet, opts.json, opts.live, opts.duration)
    try:
        with _target(opts, view):
            outcome = asyncio.run(_benchmark(opts, view))
    except (Exception, KeyboardInterrupt) as exc:
        return failure(exc, view, "interrupted before the run started; nothing was written")
    errors = outcome.errors
    if opts.report and outcome.files_error is None:
        errors += filter(None, [_report(outcome.run_dir, view)])
    for error in errors:
        view.error(error)
    return EXIT_RUN_FAILED if errors else EXIT_OK


def failure(
    exc: BaseException,
    view: View,
    interrupted: str,
    usage: tuple[type[Exception], ...] = SETUP_ERRORS,
) -> int:
    """The exit code of what ended a command early, said in one line: a problem found before the
    load (`usage`, exit 2), Ctrl-C (130), anything else as an internal error (1, or its
    traceback with `TMESH_DEBUG=1`)."""
    if isinstance(exc, usage):
        view.error(str(exc))
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        view.error(interrupted)
        return EXIT_INTERRUPTED
    if os.environ.get("TMESH_DEBUG"):
        raise exc
    view.error(f"internal error: {type(exc).__name__}: {exc} (set TMESH_DEBUG=1 for details)")
    return EXIT_RUN_FAILED


async def _benchmark(opts: BenchmarkOptions, view: View) -> Outcome:
    prep = await prepare(opts, view)
    if opts.duration is None and opts.max_requests is None:
        view.out(RUN_FOREVER_NOTE)
    prompts = prep.prompts
    view.out(format_workload(prep.spec, prompts.oracle, prompts.exact, prompts.overhead))
    view.start()
    return await measure(opts, prep, view)


@contextlib.contextmanager
def _target(opts: BenchmarkOptions, view: View) -> Iterator[None]:
    """For --demo, start the simulated engine and point the options at it."""
    if not opts.demo:
        yield
        return
    opts.profile = opts.profile or DEFAULT_PROFILE
    if opts.duration is None and opts.max_requests is None:
        opts.duration = DEMO_DURATION_S
    view.progress(f"starting the simulated engine (profile {opts.profile})…")
    with demo_engine(opts.profile) as url:
        opts.endpoint = url
        yield


def _report(run_dir: Path, view: View) -> str | None:
    """Write `report.html`; a failure is one line (the run's own files are complete anyway).

    The report is loaded only when asked for: its charts (matplotlib) would add 0.4 s to the
    start of every benchmark.
    """
    from tmesh.report.html import write_report
    from tmesh.report.load import RunLoadError

    try:
        view.progress(f"report: {write_report(run_dir)}")
    except (OSError, RunLoadError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return f"cannot write the report in {run_dir}: {reason}"
    return None
