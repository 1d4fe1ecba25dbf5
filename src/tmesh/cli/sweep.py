"""`tmesh-cli sweep`: the benchmark's flags plus the knob to vary, the demo engine wired around it,
the table on stdout and `sweep.html` written at the end.

With `--demo` the simulated engine is one of the small profiles, and prompts default to the
length they are sized for, so a five-point working-set sweep takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from tmesh.api.benchmark import SETUP_ERRORS
from tmesh.api.engine import demo_knobs, simulate
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.view import View
from tmesh.bench.prepare import BenchmarkError
from tmesh.cli.benchmark import check_flags, failure, options_from_args
from tmesh.cli.flags import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    add_option_flags,
    options_from_namespace,
)
from tmesh.results.sweeps import SWEEP_PAGE
from tmesh.sim.profiles import SMALL_PROMPT_TOKENS
from tmesh.sweep.options import SweepOptions
from tmesh.sweep.plan import SweepError
from tmesh.sweep.run import SweepOutcome, run_sweep
from tmesh.sweep.table import sweep_table

SWEPT = ("max_inflight", "request_rate", "users")
"""Benchmark options whose flag the sweep declares as a list of values."""
NOT_SWEPT = ("trace", "trace_format", "block_size", "time_scale", "loop", "trace_timing")
"""Benchmark options a sweep has no use for: it varies the contexts workload."""
DEMO_PROFILE = "small-offload"
DEMO_OUTPUT_TOKENS = 16
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(BenchmarkOptions)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option_flags(
        parser,
        BenchmarkOptions,
        shown={"profile": f"{DEMO_PROFILE} for sweeps"},
        exclude=SWEPT + NOT_SWEPT,
    )
    add_option_flags(parser, SweepOptions)


def run_command(args: argparse.Namespace) -> int:
    opts = options_from_args(args, **{name: _DEFAULTS[name] for name in SWEPT})
    sweep_opts: SweepOptions = options_from_namespace(SweepOptions, args)
    check_flags(opts)
    view = View()
    try:
        with _demo(opts, view):
            outcome = asyncio.run(run_sweep(opts, sweep_opts, view))
    except (Exception, KeyboardInterrupt) as exc:
        interrupted = "interrupted; the points measured so far are in sweep.json"
        return failure(exc, view, interrupted, (*SETUP_ERRORS, BenchmarkError, SweepError))
    return _finish(outcome, view)


def _finish(outcome: SweepOutcome, view: View) -> int:
    Console(highlight=False, width=180).print(sweep_table(outcome.sweep))
    errors = list(outcome.errors)
    if outcome.sweep.points:
        errors += filter(None, [_page(outcome.folder, view)])
    print(
        f"sweep: {outcome.folder} ({len(outcome.sweep.points)} points in {outcome.seconds:.0f} s)"
    )
    for error in errors:
        view.error(error)
    return EXIT_RUN_FAILED if errors else EXIT_OK


@contextlib.contextmanager
def _demo(opts: BenchmarkOptions, view: View) -> Iterator[None]:
    """For --demo, a small simulated engine, and prompts of its size unless given."""
    if not opts.demo:
        yield
        return
    opts.profile = opts.profile or DEMO_PROFILE
    if opts.input_length == _DEFAULTS["input_length"]:
        opts.input_length = SMALL_PROMPT_TOKENS
    if opts.output_length == _DEFAULTS["output_length"]:
        opts.output_length = DEMO_OUTPUT_TOKENS
    view.progress(
        f"starting the simulated engine (profile {opts.profile}); prompts of "
        f"{opts.input_length} tokens, answers of {opts.output_length}"
    )
    with simulate(opts.profile, **demo_knobs(opts.profile, opts.gpu_kv_tokens)) as url:
        opts.endpoint = url
        yield


def _page(folder: Path, view: View) -> str | None:
    """Write `sweep.html` (the report, and matplotlib, are loaded only now)."""
    from tmesh.report.sweep_html import write_sweep_page

    try:
        view.progress(f"curves: {write_sweep_page(folder)}")
    except OSError as exc:
        return f"cannot write {folder / SWEEP_PAGE}: {exc.strerror or exc}"
    return None
