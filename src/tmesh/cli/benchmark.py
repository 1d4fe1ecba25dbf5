"""From options to an exit code: demo engine, event loop, and every set-up error as one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.console import RUN_FOREVER_NOTE, format_workload
from tmesh.bench.output.exporter import ExporterError
from tmesh.bench.output.view import View
from tmesh.bench.run import (
    EXIT_INTERRUPTED,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    BenchmarkError,
    Prepared,
    measure,
    prepare,
)
from tmesh.bench.target.endpoint import DiscoveryError, EndpointError
from tmesh.bench.workload.prompts import PromptError
from tmesh.bench.workload.sizing import SizingError
from tmesh.bench.workload.tokens import TokenizerError
from tmesh.results.rundir import RunFilesError

SETUP_ERRORS = (
    BenchmarkError,
    DiscoveryError,
    EndpointError,
    ExporterError,
    PromptError,
    RunFilesError,
    SizingError,
    TokenizerError,
)


async def _benchmark(opts: BenchmarkOptions, view: View) -> int:
    prep = await prepare(opts, view)
    if opts.duration is None and opts.max_requests is None:
        view.out(RUN_FOREVER_NOTE)
    view.out(_workload_block(prep))
    view.start()
    return await measure(opts, prep, view)


def _workload_block(prep: Prepared) -> str:
    return format_workload(prep.spec, prep.prompts.oracle, prep.prompts.exact)


@contextlib.contextmanager
def _target(opts: BenchmarkOptions, view: View) -> Iterator[None]:
    """For --demo, start the simulated engine and point the options at it."""
    if not opts.demo:
        yield
        return
    from tmesh.cli.demo import DEMO_DURATION_S, demo_engine

    if opts.duration is None and opts.max_requests is None:
        opts.duration = DEMO_DURATION_S
    view.progress(f"starting the simulated engine (profile {opts.profile})…")
    with demo_engine(opts.profile) as url:
        opts.endpoint = url
        yield


def run(opts: BenchmarkOptions) -> int:
    view = View(opts.quiet, opts.json, opts.live, opts.duration)
    try:
        with _target(opts, view):
            return asyncio.run(_benchmark(opts, view))
    except SETUP_ERRORS as exc:
        view.error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        view.error("interrupted before the run started; nothing was written")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get("TMESH_DEBUG"):
            raise
        view.error(f"internal error: {type(exc).__name__}: {exc} (set TMESH_DEBUG=1 for details)")
        return EXIT_RUN_FAILED
