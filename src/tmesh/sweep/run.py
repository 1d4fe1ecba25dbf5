"""`tmesh-cli sweep`: one benchmark per value of a knob against one endpoint, and their curve.

Each point is a normal run (`bench.run.prepare` then `measure`) in a folder of its own inside the
sweep's folder. Before each point the server's prefix cache is reset where the server allows it;
where it does not, the point's own seed still makes its contexts new to the server. `sweep.json`
is rewritten after every point, so a sweep stopped half-way keeps what it measured.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from tmesh.bench.endpoint.cachereset import reset_prefix_cache
from tmesh.bench.endpoint.discovery import auth_headers, normalize_endpoint
from tmesh.bench.endpoint.session import open_session
from tmesh.bench.measure.servermetrics import ServerMetricsScraper, default_metrics_url
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output.view import View
from tmesh.bench.prepare import check_local, prepare
from tmesh.bench.run import measure
from tmesh.results.catalogue.server import GPU_CAPACITY_TOKENS
from tmesh.results.catalogue.units import FRACTION, SECONDS, console_value
from tmesh.results.rundir import default_run_dir
from tmesh.results.sweeps import Sweep, SweepPoint, write_sweep
from tmesh.sweep.options import SweepOptions
from tmesh.sweep.plan import (
    SweepError,
    SweepPlan,
    check_plan,
    point_contexts,
    point_name,
    point_options,
    sweep_plan,
)
from tmesh.sweep.points import point_figures, read_records

STOPPED_BY_USER = ("signal", "interrupted")


@dataclass
class SweepOutcome:
    """The sweep as far as it went, its folder, how long it took, and what made it fail."""

    sweep: Sweep
    folder: Path
    seconds: float
    errors: list[str] = field(default_factory=list)


async def run_sweep(opts: BenchmarkOptions, sweep_opts: SweepOptions, view: View) -> SweepOutcome:
    plan = sweep_plan(sweep_opts)
    if opts.trace is not None:
        raise SweepError("a sweep varies the contexts workload: leave out --trace")
    check_plan(plan, opts)
    started = time.monotonic()
    folder = opts.output_dir or default_run_dir(Path("tmesh-sweeps"))
    base_url = normalize_endpoint(opts.endpoint or "")
    headers = auth_headers(opts.api_key)
    async with open_session(2, opts.insecure) as session:
        capacity = opts.cache_tokens
        if capacity is None and plan.ratio(0) is not None:
            capacity = await _gpu_capacity(session, opts, base_url, headers)
        sweep = Sweep(
            plan.knob, base_url, opts.model or "",
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
            capacity, opts.input_length,
        )  # fmt: skip
        run = _Sweeper(plan, opts, sweep_opts, point_contexts(plan, opts, capacity), folder, sweep)
        outcome = SweepOutcome(sweep, folder, 0.0)
        for index in range(len(plan.values)):
            reset = await _reset(session, base_url, headers, sweep, sweep_opts.reset, view)
            error = await run.point(index, reset, view)
            write_sweep(folder, sweep)
            outcome.seconds = time.monotonic() - started
            if error is not None:
                outcome.errors.append(error)
                break
    return outcome


async def _gpu_capacity(
    session: aiohttp.ClientSession, opts: BenchmarkOptions, base_url: str, headers: dict[str, str]
) -> int | None:
    """The GPU KV capacity the server's `/metrics` report, if it does."""
    if not opts.server_metrics:
        return None
    url = opts.metrics_url or default_metrics_url(base_url)
    sample = await ServerMetricsScraper(url, session, headers).scrape()
    found = sample.gauges.get(GPU_CAPACITY_TOKENS.key) if sample is not None else None
    return int(found) if found else None


async def _reset(
    session: aiohttp.ClientSession, base_url: str, headers: dict[str, str], sweep: Sweep,
    wanted: bool, view: View,
) -> bool:  # fmt: skip
    """Empty the server's prefix cache before a point; say once how, or why it cannot."""
    if not wanted:
        sweep.reset = sweep.reset or "not asked (--no-reset)"
        return False
    route, words = await reset_prefix_cache(session, base_url, headers)
    if sweep.reset is None:
        sweep.reset = words if route else f"not allowed by the server ({words})"
        if route is None:
            view.progress(
                f"the server's prefix cache cannot be reset ({words}); each point's contexts "
                "are new to it instead (a seed of their own)"
            )
    return route is not None


@dataclass
class _Sweeper:
    """What every point of one sweep shares."""

    plan: SweepPlan
    opts: BenchmarkOptions
    sweep_opts: SweepOptions
    contexts: list[int]
    folder: Path
    sweep: Sweep

    async def point(self, index: int, reset: bool, view: View) -> str | None:
        """Run point `index` and add it to the sweep; the reason to stop the sweep, if any."""
        plan, opts, sweep = self.plan, self.opts, self.sweep
        point_opts = point_options(
            plan, opts, self.sweep_opts.passes, self.contexts, index, self.folder
        )
        view.progress(
            f"point {index + 1}/{len(plan.values)}: {sweep.label} {plan.values[index]:g} "
            f"({self.contexts[index] or 'sized'} contexts, {point_opts.max_inflight} in flight)…"
        )
        quiet = View(quiet=True, stdout=io.StringIO())
        prep = await prepare(point_opts, quiet, check_local(point_opts))
        ran = await measure(point_opts, prep, quiet)
        sweep.model = prep.spec.model
        timed = opts.duration is not None or opts.max_requests is not None
        point = point_figures(
            plan.values[index], point_name(plan, index), prep.spec.num_contexts,
            read_records(ran.run_dir), ran.summary, opts.warmup if timed else None, reset,
        )  # fmt: skip
        sweep.points.append(point)
        view.progress("  " + _said(point))
        if ran.errors:
            return f"point {index + 1} failed: {'; '.join(ran.errors)}"
        if ran.summary.stop_reason in STOPPED_BY_USER:
            return f"stopped by the user during point {index + 1}"
        return None


def _said(point: SweepPoint) -> str:
    return (
        f"{point.requests} requests, TTFT p50 {console_value(point.ttft_p50, SECONDS)} "
        f"(revisits {console_value(point.revisit_ttft_p50, SECONDS)}), hit rate "
        f"{console_value(point.measured_hit_rate, FRACTION)} (ideal LRU "
        f"{console_value(point.lru_hit_rate, FRACTION)}, infinite "
        f"{console_value(point.infinite_hit_rate, FRACTION)})"
    )
