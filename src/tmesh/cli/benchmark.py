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
from urllib.parse import urlsplit

from tmesh.bench.capacity import find_max_users
from tmesh.bench.endpoint.discovery import DiscoveryError, EndpointError
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.exporter import ExporterError
from tmesh.bench.output.view import View
from tmesh.bench.prepare import BenchmarkError, Local, check_local, prepare
from tmesh.bench.run import Outcome, Spread, measure
from tmesh.bench.workload.blocks import BlockError
from tmesh.bench.workload.prompts import PromptError
from tmesh.bench.workload.sizing import SizingError
from tmesh.bench.workload.tokens import TokenizerError
from tmesh.bench.workload.trace import TraceError
from tmesh.cli.demo import DEMO_DURATION_S, DEMO_SESSIONS_GPU_TOKENS, demo_engine
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
from tmesh.sim.profiles import DEFAULT_PROFILE, PROFILES

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
    check_flags(opts)
    return run(opts)


def check_flags(opts: BenchmarkOptions) -> None:
    """Flags that parse one by one but not together (one line, exit 2)."""
    if not opts.demo and not opts.endpoint:
        raise UsageError("--endpoint is required (or use --demo for the built-in simulated engine)")
    if opts.demo and opts.endpoint:
        raise UsageError("--demo runs against the built-in simulated engine: drop --endpoint")
    if opts.profile is not None and not opts.demo:
        raise UsageError("--profile chooses the simulated engine of --demo: add --demo")
    if opts.profile is not None and opts.profile not in PROFILES:
        raise UsageError(f"unknown --profile {opts.profile!r}; choose from {', '.join(PROFILES)}")
    if sum((opts.quiet, opts.json, opts.live)) > 1:
        raise UsageError("choose at most one of --quiet, --json, --live")
    if opts.api_key is not None and (not opts.api_key.isprintable() or " " in opts.api_key):
        raise UsageError("--api-key holds spaces or control characters (a pasted newline?)")
    if opts.metrics_url is not None:
        if not opts.server_metrics:
            raise UsageError("--metrics-url and --no-server-metrics contradict each other")
        parts = urlsplit(opts.metrics_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"--metrics-url {opts.metrics_url!r} is not an http(s) URL")
    problem = conflict(opts)
    if problem:
        raise UsageError(problem)
    if opts.duration is not None and opts.warmup >= opts.duration:
        raise UsageError(
            f"--warmup {opts.warmup:g} leaves nothing of --duration {opts.duration:g} "
            "for the steady-state figures"
        )


def conflict(opts: BenchmarkOptions) -> str | None:
    """The traffic options that do not go together, in one line."""
    sessions = opts.workload == "sessions"
    if opts.trace is not None and (sessions or opts.request_rate is not None):
        flag = "--workload sessions" if sessions else "--request-rate"
        return f"{flag} does not go with --trace: a trace brings its requests and their times"
    if sessions and opts.request_rate is not None:
        return "--request-rate is the contexts' open loop; sessions arrive with --session-rate"
    if not sessions and (opts.session_rate is not None or opts.find_max_users):
        flag = "--session-rate" if opts.session_rate is not None else "--find-max-users"
        return f"{flag} needs --workload sessions"
    if opts.find_max_users and (not opts.slo or opts.session_rate is not None):
        return "--find-max-users needs --slo and a user count (not --session-rate)"
    if opts.gpu_kv_tokens is not None and not opts.demo:
        return "--gpu-kv-tokens sizes the simulated engine of --demo"
    return cluster_conflict(opts)


def cluster_conflict(opts: BenchmarkOptions) -> str | None:
    """The options of a spread run that do not go together, in one line."""
    if opts.ray is None:
        if opts.ray_actors is not None or not opts.gather:
            return f"{'--ray-actors' if opts.ray_actors is not None else '--no-gather'} needs --ray"
        if opts.tolerate_actor_loss and opts.workers < 2:
            return "--tolerate-actor-loss needs --ray or --workers 2 or more"
        return None
    if opts.workers > 1:
        return "--ray and --workers are two ways to spread the load: choose one"
    if opts.find_max_users:
        return "--find-max-users runs on one machine: drop --ray"
    return None


def run(opts: BenchmarkOptions) -> int:
    """The benchmark: the checks that need no server, then the demo engine if asked for, then
    discovery and the run; every ending an exit code."""
    if opts.demo and opts.duration is None and opts.max_requests is None:
        opts.duration = DEMO_DURATION_S
    view = View(opts.quiet, opts.json, opts.live, opts.duration)
    try:
        local = check_local(opts)
        with _target(opts, view), _cluster(opts, view) as spread:
            outcome = asyncio.run(_benchmark(opts, view, local, spread))
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


async def _benchmark(
    opts: BenchmarkOptions, view: View, local: Local, spread: Spread | None
) -> Outcome:
    prep = await prepare(opts, view, local)
    if opts.find_max_users:
        return await find_max_users(opts, prep, view)
    return await measure(opts, prep, view, spread)


@contextlib.contextmanager
def _cluster(opts: BenchmarkOptions, view: View) -> Iterator[Spread | None]:
    """For --ray, connect to the cluster (or start a local one) and place the actors.

    Ray is loaded only here: it is an optional extra, and importing it costs half a second. A
    local cluster is told, before Ray is imported, not to report usage and to stay on 127.0.0.1
    (Ray otherwise finds "its" address by asking the route to a public resolver).
    """
    if opts.ray is None:
        yield None
        return
    address = os.environ.get("RAY_ADDRESS") if opts.ray == "auto" else opts.ray
    if not address:
        address = None
        for name in ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
            os.environ.setdefault(name, "0")
    try:
        from tmesh.bench import ray_pool
    except ImportError:
        raise BenchmarkError("--ray needs Ray: pip install 'tmesh-bench[ray]'") from None
    view.progress(f"ray: connecting to {address}…" if address else "ray: starting a local cluster…")
    try:
        cluster = ray_pool.RayCluster(
            address, opts.ray_actors, opts.api_key, opts.gather, opts.tolerate_actor_loss
        )
    except ray_pool.ClusterError as exc:
        raise BenchmarkError(f"ray: {exc}") from None
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BenchmarkError(f"ray: cannot use the cluster at {address}: {exc}") from None
    view.progress(cluster.describe())
    try:
        yield cluster.spread
    finally:
        cluster.close()


@contextlib.contextmanager
def _target(opts: BenchmarkOptions, view: View) -> Iterator[None]:
    """For --demo, start the simulated engine and point the options at it."""
    if not opts.demo:
        yield
        return
    opts.profile = opts.profile or DEFAULT_PROFILE
    gpu = opts.gpu_kv_tokens
    if gpu is None and opts.workload == "sessions":
        gpu = DEMO_SESSIONS_GPU_TOKENS
    sized = f", GPU KV {gpu} tokens" if gpu else ""
    view.progress(f"starting the simulated engine (profile {opts.profile}{sized})…")
    with demo_engine(opts.profile, gpu) as url:
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
