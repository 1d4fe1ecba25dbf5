"""`tmesh.benchmark` and `tmesh.abenchmark`: one run from Python, the very run `tmesh-cli
benchmark` makes: the checks that need no server, the demo engine, discovery, the load, the
report, wired here once for both.

A run from Python ends like one from the command line: on its limits, on Ctrl-C (the signal
handlers of the pipeline), and also when the task running it is cancelled, each time with its
files complete and a `Result`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

from tmesh.api.engine import DEMO_DURATION_S, DEMO_SESSIONS_GPU_TOKENS, demo_knobs, simulate
from tmesh.api.options import benchmark_options
from tmesh.api.result import Result
from tmesh.bench.capacity import find_max_users
from tmesh.bench.endpoint.discovery import DiscoveryError, EndpointError
from tmesh.bench.load.runner import Stopper
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.exporter import ExporterError
from tmesh.bench.output.view import View
from tmesh.bench.prepare import BenchmarkError, Prepared, check_local, prepare
from tmesh.bench.run import Outcome, Spread, measure
from tmesh.bench.workload.blocks import BlockError
from tmesh.bench.workload.prompts import PromptError
from tmesh.bench.workload.sizing import SizingError
from tmesh.bench.workload.tokens import TokenizerError
from tmesh.bench.workload.trace import TraceError
from tmesh.report.load import RequestColumns, Run, RunLoadError, load_run
from tmesh.results.records import IntervalSnapshot
from tmesh.results.rundir import RunFilesError
from tmesh.sim.profiles import DEFAULT_PROFILE

SETUP_ERRORS = (
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
"""What the stages raise for a problem found before the run; each becomes a `BenchmarkError`."""
Progress = Callable[[IntervalSnapshot], object]


def benchmark(*, on_interval: Progress | None = None, **options: Any) -> Result:
    """Run the benchmark and return its `Result` (its files are in `result.path`).

    Every option of `tmesh-cli benchmark` is a keyword of the same name and default:
    `endpoint`, `api_key` (default: `$TMESH_API_KEY` or `$OPENAI_API_KEY`), `duration`,
    `max_requests`, `input_length`, `output_dir`, `demo`, `quiet`, … (`help(tmesh.BenchmarkOptions)`
    lists them with their units). `on_interval` is called with each interval's
    `IntervalSnapshot` as the run goes. Raises `OptionError` for a bad option and
    `BenchmarkError` for a problem found before the run (an endpoint that does not answer, a
    workload that does not fit), each with a one-line message. Inside a running event loop (a
    notebook), use `await tmesh.abenchmark(...)`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "tmesh.benchmark() cannot run inside a running event loop (a notebook?): "
            "use `await tmesh.abenchmark(...)`"
        )
    opts = benchmark_options(**options)
    return asyncio.run(run_benchmark(opts, view_for(opts), on_interval))


async def abenchmark(*, on_interval: Progress | None = None, **options: Any) -> Result:
    """`benchmark` as a coroutine. Cancelling its task stops the run as Ctrl-C does: requests
    in flight get their grace period, the files are completed, and the `Result` is returned
    (stop reason `cancelled`); a second cancellation abandons the requests in flight."""
    opts = benchmark_options(**options)
    return await run_benchmark(opts, view_for(opts), on_interval)


def view_for(opts: BenchmarkOptions) -> View:
    """Where the run's words go, as its options ask. A demo without limits gets its duration
    here, since the view shows the time left."""
    if opts.demo and opts.duration is None and opts.max_requests is None:
        opts.duration = DEMO_DURATION_S
    return View(opts.quiet, opts.json, opts.live, opts.duration)


async def run_benchmark(
    opts: BenchmarkOptions,
    view: View,
    on_interval: Progress | None = None,
    spread: Spread | None = None,
) -> Result:
    """The benchmark from checked options to its `Result`; `BenchmarkError` before the run.
    `spread` runs the load on a cluster (`tmesh-cli benchmark --ray` builds it)."""
    with _setup_errors():
        local = check_local(opts)
    stopper = Stopper()
    failures: list[Exception] = []
    progress = _guarded(on_interval, stopper, failures) if on_interval is not None else None
    async with _target(opts, view):
        with _setup_errors():
            prep = await prepare(opts, view, local)
        if opts.find_max_users:
            outcome = await find_max_users(opts, prep, view)
        else:
            run = measure(opts, prep, view, stopper, progress, spread)
            outcome = await _measure(run, stopper)
    if failures:
        raise failures[0]
    errors = outcome.errors
    if opts.report and outcome.files_error is None:
        errors += filter(None, [_report(outcome, view)])
    return Result(_read_back(outcome, prep), errors)


@contextlib.contextmanager
def _setup_errors() -> Iterator[None]:
    try:
        yield
    except SETUP_ERRORS as exc:
        raise BenchmarkError(str(exc)) from exc


@contextlib.asynccontextmanager
async def _target(opts: BenchmarkOptions, view: View) -> AsyncIterator[None]:
    """For a demo, start the simulated engine and point the options at it."""
    if not opts.demo:
        yield
        return
    opts.profile = opts.profile or DEFAULT_PROFILE
    gpu = opts.gpu_kv_tokens
    if gpu is None and opts.workload == "sessions":
        gpu = DEMO_SESSIONS_GPU_TOKENS
    sized = f", GPU KV {gpu} tokens" if gpu else ""
    view.progress(f"starting the simulated engine (profile {opts.profile}{sized})…")
    async with simulate(opts.profile, **demo_knobs(opts.profile, gpu)) as url:
        opts.endpoint = url
        yield


async def _measure(run: Coroutine[Any, Any, Outcome], stopper: Stopper) -> Outcome:
    """The run; a cancellation of the caller's task stops it gracefully rather than cutting it."""
    task = asyncio.ensure_future(run)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():
            raise
        stopper.stop("cancelled")
        _uncancel()
        return await task


def _uncancel() -> None:
    """The cancellation is handled (the run stops and its result is returned): tell the task,
    so a timeout around the call sees its own cancellation as consumed."""
    task = asyncio.current_task()
    if sys.version_info >= (3, 11) and task is not None:
        task.uncancel()


def _guarded(
    callback: Progress, stopper: Stopper, failures: list[Exception]
) -> Callable[[IntervalSnapshot], None]:
    """The progress callback, whose exception stops the run (files complete) and is raised
    once it has stopped, instead of silently ending the interval ticks."""

    def call(snap: IntervalSnapshot) -> None:
        if failures:
            return
        try:
            callback(snap)
        except Exception as exc:
            failures.append(exc)
            stopper.stop("failed")

    return call


def _report(outcome: Outcome, view: View) -> str | None:
    """Write `report.html`; a failure is one line (the run's own files are complete anyway).

    The report is loaded only when asked for: its charts (matplotlib) would add 0.4 s to the
    start of every benchmark.
    """
    from tmesh.report.html import write_report

    try:
        view.progress(f"report: {write_report(outcome.run_dir)}")
    except (OSError, RunLoadError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return f"cannot write the report in {outcome.run_dir}: {reason}"
    return None


def _read_back(outcome: Outcome, prep: Prepared) -> Run:
    """The run folder just written, read as any run is; when it cannot be (the disk filled
    before its config was written), the run as measured, without its intervals."""
    try:
        return load_run(outcome.run_dir, requests=False)
    except RunLoadError:
        return Run(
            outcome.run_dir, {}, prep.spec, outcome.summary, "the run in memory", [],
            "the run in memory", RequestColumns.none(),
        )  # fmt: skip
