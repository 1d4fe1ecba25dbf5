"""`tmesh-cli benchmark`: options from flags, the run through the Python API's own pipeline
(`tmesh.api.benchmark`), on a Ray cluster for `--ray`, and every way it can end turned into an
exit code."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from tmesh.api.benchmark import run_benchmark, view_for
from tmesh.api.options import conflict, flag, key_from_environment
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.view import View
from tmesh.bench.prepare import BenchmarkError
from tmesh.bench.run import Spread
from tmesh.cli.flags import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    UsageError,
    add_option_flags,
    options_from_namespace,
)
from tmesh.sim.profiles import DEFAULT_PROFILE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option_flags(parser, BenchmarkOptions, shown={"profile": DEFAULT_PROFILE})


def options_from_args(args: argparse.Namespace, **given: Any) -> BenchmarkOptions:
    """The options the flags give; the key falls back on the environment. `given` sets options
    whose flags mean something else in the calling command (a sweep's lists of values)."""
    key = args.api_key or key_from_environment()
    options: BenchmarkOptions = options_from_namespace(BenchmarkOptions, args, api_key=key, **given)
    return options


def run_command(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    check_flags(opts)
    return run(opts)


def check_flags(opts: BenchmarkOptions) -> None:
    """Flags that parse one by one but not together (one line, exit 2)."""
    problem = conflict(opts, flag)
    if problem is not None:
        raise UsageError(problem)


def run(opts: BenchmarkOptions) -> int:
    """The benchmark, every ending an exit code: 2 for a problem found before the run, 130 for
    Ctrl-C before it started, 1 for a failed run."""
    view = view_for(opts)
    try:
        with _cluster(opts, view) as spread:
            result = asyncio.run(run_benchmark(opts, view, spread=spread))
    except (Exception, KeyboardInterrupt) as exc:
        return failure(exc, view, "interrupted before the run started; nothing was written")
    for error in result.errors:
        view.error(error)
    return EXIT_RUN_FAILED if result.errors else EXIT_OK


def failure(
    exc: BaseException,
    view: View,
    interrupted: str,
    usage: tuple[type[Exception], ...] = (BenchmarkError,),
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
        install = "pip install -e '.[ray]' in tmesh's source folder"
        raise BenchmarkError(f"--ray needs Ray: {install}") from None
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
    cluster.say = view.progress
    try:
        yield cluster.spread
    finally:
        cluster.close()
