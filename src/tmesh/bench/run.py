"""`tmesh-cli benchmark` from the first request to the summary: the one place that wires the load,
measure and output stages together around what `prepare` built.

This file decides the order, turns stage failures into one-line messages a user can act on, and
makes sure every stop path leaves complete files behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from tmesh import __version__
from tmesh.bench.endpoint.discovery import (
    auth_headers,
)
from tmesh.bench.endpoint.session import open_session
from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.http import Pool
from tmesh.bench.load.runner import LoopControl, Stopper, StopRules, TickFn
from tmesh.bench.load.traffic import Traffic, TrafficKind, make_loop
from tmesh.bench.measure.goodput import parse_slo
from tmesh.bench.measure.idealcache import (
    IdealCache,
    Predictor,
    ReuseScore,
    SessionPredictor,
    cache_geometry,
    reuse_figures,
)
from tmesh.bench.measure.prometheus import ServerSample
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.measure.servermetrics import ServerMetricsScraper, default_metrics_url
from tmesh.bench.measure.sessions import parse_gap_buckets
from tmesh.bench.measure.verdict import summarize_cache, verdict_so_far
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output import console
from tmesh.bench.output.exporter import Exporter
from tmesh.bench.output.view import View
from tmesh.bench.part import PartTask, part_tasks
from tmesh.bench.parts import PartsDriver
from tmesh.bench.prepare import Prepared
from tmesh.bench.workers import WorkerPool
from tmesh.bench.workload.schedule import tiling_segments
from tmesh.bench.workload.sessions import AnswerCosts
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    RequestRecord,
    RunSummary,
    StopReason,
)
from tmesh.results.rundir import (
    RunFiles,
    RunFilesError,
    default_run_dir,
    finishing_order,
    read_requests,
    request_streams,
)
from tmesh.text import mask_key, scrub

# A second Ctrl-C ends the process at once with the shell's code for SIGINT (128 + 2).
EXIT_INTERRUPTED = 130

Spread = Callable[[PartTask, Recorder, TickFn], PartsDriver]
"""Builds the driver of a run spread over a cluster from the task each part's is cut from
(it holds the rules and the origin), the run's recorder (whose `absorb` takes their windows)
and the tick callback: `cli` hands
one to `measure` for `--ray`, so this module never imports a cluster library."""


@dataclass
class Outcome:
    """How a measured run ended. `fatal` is the stop rule that failed it (every request of the
    first minute failed, too many errors in a row, a lost worker); `files_error` says the run
    folder stopped taking writes. Either makes it a failed run; both are one line."""

    summary: RunSummary
    run_dir: Path
    fatal: str | None = None
    files_error: str | None = None

    @property
    def errors(self) -> list[str]:
        return [e for e in (self.fatal, self.files_error) if e]


def run_config(opts: BenchmarkOptions, prep: Prepared) -> dict[str, Any]:
    """The `config.json` of a run: enough to repeat it, with the key masked."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}
    options["api_key"] = mask_key(opts.api_key) if opts.api_key else None
    return {
        "tmesh_version": __version__,
        "endpoint": prep.base_url,
        "api_key": mask_key(opts.api_key) if opts.api_key else None,
        "model": prep.spec.model,
        "models_found": prep.discovery.models,
        "max_model_len": prep.discovery.context.tokens if prep.discovery.context else None,
        "context_source": prep.discovery.context.source if prep.discovery.context else None,
        "workload": asdict(prep.spec),
        "token_oracle": prep.prompts.oracle,
        "tokens_exact": prep.prompts.exact,
        "request_overhead_tokens": prep.prompts.overhead,
        "ignore_eos": prep.ignore_eos,
        "session_framing": asdict(prep.sessions.framing) if prep.sessions else None,
        "answers_recounted": bool(prep.sessions and prep.sessions.resend_differs),
        "options": options,
        "command": masked_argv(sys.argv, opts.api_key),
    }


def masked_argv(argv: list[str], key: str | None) -> list[str]:
    """The command line as typed, with the key replaced wherever it appears."""
    if not key:
        return list(argv)
    return [scrub(arg, key) for arg in argv]


class Session:
    """One measured run: owns the recorder, files, scraper and exporter for its lifetime."""

    def __init__(
        self,
        opts: BenchmarkOptions,
        prep: Prepared,
        view: View,
        on_interval: Callable[[IntervalSnapshot], None] | None = None,
    ) -> None:
        self.opts, self.prep, self.view = opts, prep, view
        self.on_interval = on_interval
        self.origin = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.recorder = Recorder(
            prep.spec,
            opts.warmup,
            opts.interval,
            parse_slo(opts.slo) if opts.slo else None,
            parse_gap_buckets(opts.gap_buckets),
        )
        self.files = RunFiles(
            prep.run_dir or opts.output_dir or default_run_dir(), opts.max_records
        )
        self.exporter = Exporter(opts.prometheus_port) if opts.prometheus_port else None
        self.scraper: ServerMetricsScraper | None = None
        self.loop: LoopControl | None = None
        self.first_sample: ServerSample | None = None
        self.last_sample: ServerSample | None = None
        self.summary_written = False
        self.files_error: str | None = None
        self._said_unavailable = False
        self.predictor: Predictor | SessionPredictor | None = None
        self.cache_tokens: int | None = None
        self.reuse = ReuseScore()

    def start_predicting(self) -> None:
        """The ideal caches, sized from the first scrape (or `--cache-tokens`), over the plans
        in the order they are sent (a session's turns in the order they finish)."""
        prep = self.prep
        capacity, block = cache_geometry(self.first_sample, self.opts.cache_tokens)
        cache = IdealCache(capacity, block)
        self.cache_tokens = capacity
        sessions = prep.spec.sessions
        if sessions is not None:
            system = prep.prompts.context_tokens[0] + prep.prompts.overhead
            self.predictor = SessionPredictor(cache, system, sessions.turns)
            return
        stream = (
            prep.replay.segments()
            if prep.replay is not None
            else tiling_segments(prep.prompts, prep.spec.seed)
        )
        self.predictor = Predictor(stream, cache)

    def on_record(self, record: RequestRecord) -> None:
        self._predict(record)
        self.recorder.add(record)
        self._write(self.files.append_request, record)
        if self.exporter:
            self.exporter.observe(record)

    def _predict(self, record: RequestRecord) -> None:
        prediction = self.predictor.predict(record) if self.predictor else None
        if prediction is not None:
            record.prediction = prediction.label
            self.reuse.add(prediction, record)

    def predict_parts(self) -> None:
        """A spread run's records never pass through the driver: once the parts' files are in
        the run folder, its ideal-cache predictions are made from them, in the order the
        requests finished, as one process makes them as they finish (the files keep no
        per-request label)."""
        if not isinstance(self.loop, PartsDriver) or not self.loop.gathered or not self.predictor:
            return
        streams = [read_requests(stream) for stream in request_streams(self.files.path)]
        for record in finishing_order(streams):
            self._predict(record)

    async def on_tick(self, now: float, health: ClientHealth) -> None:
        self.view.interval(await self.close_interval(now, health))

    async def close_interval(self, now: float, health: ClientHealth) -> IntervalSnapshot:
        """Scrape the server and close the interval; also run once at stop for the last part."""
        server = await self._scrape_interval()
        snap = self.recorder.snapshot(now, server=server, health=health)
        snap.verdict = verdict_so_far(snap, self.prep.spec, self.first_sample, self.last_sample)
        self._write(self.files.append_interval, snap)
        if self.exporter:
            if isinstance(self.loop, PartsDriver):
                self.exporter.count(snap.interval_stats)
            self.exporter.update(snap)
        if self.on_interval is not None:
            self.on_interval(snap)
        return snap

    async def _scrape_interval(self) -> dict[str, float] | None:
        if self.scraper is None:
            return None
        sample = await self.scraper.scrape()
        if sample is None:
            if self.scraper.unavailable_reason and not self._said_unavailable:
                self._said_unavailable = True
                self.view.progress(f"server metrics unavailable: {self.scraper.unavailable_reason}")
            return None
        view = self.scraper.interval(self.last_sample, sample)
        self.first_sample = self.first_sample or sample
        self.last_sample = sample
        return view

    def finish(self, stop_reason: StopReason) -> RunSummary:
        """Write `summary.json` and flush everything; safe to call from a signal handler path."""
        summary = self.recorder.summary(self.now(), stop_reason, self.started_at)
        if isinstance(self.loop, PartsDriver):
            summary.parts = self.loop.parts_summary()
        summarize_cache(summary, self.prep.spec, self.scraper, self.first_sample, self.last_sample)
        if summary.server is not None:
            summary.server.update(reuse_figures(self.reuse, summary.server, self.cache_tokens))
        try:
            self.files.write_summary(summary)
        except RunFilesError as exc:
            self.files_error = self.files_error or str(exc)
        self.summary_written = True
        return summary

    def _write(self, write: Callable[[Any], None], item: Any) -> None:
        """A run folder that stops taking writes (disk full, quota) stops the run, which still
        ends with its summary on stdout and one line naming the problem, not a traceback."""
        if self.files_error is not None:
            return
        try:
            write(item)
        except RunFilesError as exc:
            self.files_error = str(exc)
            if self.loop is not None:
                self.loop.request_stop("write-error")

    def now(self) -> float:
        return time.monotonic() - self.origin


async def measure(
    opts: BenchmarkOptions,
    prep: Prepared,
    view: View,
    stopper: Stopper | None = None,
    on_interval: Callable[[IntervalSnapshot], None] | None = None,
    spread: Spread | None = None,
) -> Outcome:
    """Run the load loop until a stop rule, a signal or `stopper`, and show the summary;
    `on_interval` gets each interval's snapshot as it is written, the last (partial) one too;
    `spread` runs the load on a cluster."""
    spec = prep.spec
    run = Session(opts, prep, view, on_interval)
    if run.exporter:
        run.exporter.start()
        view.progress(f"tmesh metrics at http://127.0.0.1:{run.exporter.port}/metrics")
    run.files.write_config(run_config(opts, prep), secret=opts.api_key)
    _announce(opts, prep, view)
    config = ClientConfig(
        base_url=prep.base_url,
        api=spec.api,
        model=spec.model,
        headers=auth_headers(opts.api_key),
        max_tokens=spec.output_length,
        request_timeout=opts.request_timeout,
        ignore_eos=prep.ignore_eos,
    )
    async with (
        open_session(2, opts.insecure) as session,
        Pool(spec.max_inflight, opts.insecure) as pool,
    ):
        if opts.server_metrics:
            url = opts.metrics_url or default_metrics_url(prep.base_url)
            run.scraper = ServerMetricsScraper(url, session, config.headers)
            run.first_sample = run.last_sample = await run.scraper.scrape()
        run.start_predicting()

        loop = run.loop = _load_loop(opts, prep, run, pool, config, session, spread)
        if stopper is not None:
            stopper.attach(loop)
        try:
            with _signals(loop, run, view):
                state = await loop.run()
                run.predict_parts()
                await run.close_interval(loop.now(), loop.health(loop.now()))
                summary = run.finish(state.stop_reason or "stopped")
        finally:
            if not run.summary_written:
                run.finish("failed")
            if run.exporter:
                run.exporter.stop()
    view.summary(summary, run.files.path)
    return Outcome(summary, run.files.path, state.fatal or no_success(summary), run.files_error)


def _announce(opts: BenchmarkOptions, prep: Prepared, view: View) -> None:
    """The run has started (its folder exists): say so, and what it sends."""
    if opts.duration is None and opts.max_requests is None:
        view.out(console.RUN_FOREVER_NOTE)
    prompts = prep.prompts
    view.out(console.format_workload(prep.spec, prompts.oracle, prompts.exact, prompts.overhead))
    view.start()


def no_success(summary: RunSummary) -> str | None:
    """A run in which no request succeeded measured nothing: it must not end as a success."""
    if summary.total_requests:
        return None
    if not summary.failed_requests:
        return "no request finished, so nothing was measured"
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.overall.errors.items()))
    first = next(iter(summary.error_messages.values()), "")
    return f"no request succeeded ({summary.failed_requests} failed: {kinds}); first error: {first}"


def _load_loop(
    opts: BenchmarkOptions,
    prep: Prepared,
    run: Session,
    pool: Pool,
    config: ClientConfig,
    session: aiohttp.ClientSession,
    spread: Spread | None,
) -> LoopControl:
    """One event loop in this process, `--workers` processes or a cluster's actors sharing the
    workload."""
    rules = StopRules(
        duration=opts.duration,
        max_requests=opts.max_requests,
        max_consecutive_errors=opts.max_consecutive_errors,
        grace_s=opts.grace,
    )
    traffic = _traffic(opts, prep)
    if spread is not None or opts.workers > 1:
        template = PartTask(
            traffic, config, run.origin, opts.insecure, opts.interval, rules, prep.spec,
            str(run.files.path), opts.warmup, run.recorder.slo, run.recorder.gap_edges,
            opts.max_records,
        )  # fmt: skip
        if spread is not None:
            return spread(template, run.recorder, run.on_tick)
        tasks = part_tasks(opts.workers, template)
        return WorkerPool(
            tasks, run.recorder.absorb, run.on_tick, traffic.cap, rules, run.origin,
            opts.interval, opts.tolerate_actor_loss,
        )  # fmt: skip
    costs = AnswerCosts(prep.sessions, session) if prep.sessions else None
    return make_loop(
        traffic, pool, config, costs, run.on_record, run.on_tick, rules, run.origin, opts.interval
    )


def _traffic(opts: BenchmarkOptions, prep: Prepared) -> Traffic:
    spec = prep.spec
    if prep.replay is not None:
        timed = opts.trace_timing == "trace"
        return Traffic("open" if timed else "closed", spec.max_inflight, spec.seed,
                       replay=prep.replay)  # fmt: skip
    if prep.sessions is not None:
        return Traffic("sessions", spec.max_inflight, spec.seed, sessions=prep.sessions,
                       arrival=spec.arrival)  # fmt: skip
    kind: TrafficKind = "closed" if spec.request_rate is None else "open"
    return Traffic(kind, spec.max_inflight, spec.seed, prep.prompts, None, spec.request_rate,
                   spec.arrival)  # fmt: skip


class _signals:
    """SIGINT/SIGTERM stop the run gracefully; a second SIGINT exits at once with files valid.

    Signals reach only the main thread: a run in another thread (the Python API called from a
    worker thread) is stopped by its caller instead, through a `Stopper`.
    """

    def __init__(self, loop: LoopControl, run: Session, view: View) -> None:
        self.loop, self.run, self.view = loop, run, view
        self.count = 0
        self.installed = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _signals:
        if self.installed:
            aio = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                aio.add_signal_handler(sig, self._handle, sig)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            aio = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                aio.remove_signal_handler(sig)

    def _handle(self, sig: signal.Signals) -> None:
        self.count += 1
        if self.count == 1:
            inflight = self.loop.inflight
            self.view.progress(
                f"{sig.name}: stopping; waiting up to {self.run.opts.grace:.0f} s for "
                f"{inflight} in-flight requests (Ctrl-C again to quit now)"
            )
            self.loop.request_stop("signal")
            return
        if not self.run.summary_written:
            self.run.finish("interrupted")
        self.view.flush()
        os._exit(EXIT_INTERRUPTED)
