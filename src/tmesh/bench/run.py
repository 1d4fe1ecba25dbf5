"""`tmesh-cli benchmark` from discovery to summary: the one place that wires the stages together.

Each stage is its own module; this file only decides the order, turns stage errors into the
one-line messages a user can act on, and makes sure every stop path leaves complete
files behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

from tmesh import __version__
from tmesh.bench.endpoint.capabilities import probe_ignore_eos
from tmesh.bench.endpoint.dialects import ContextLimit
from tmesh.bench.endpoint.discovery import (
    Discovery,
    auth_headers,
    discover_patiently,
    normalize_endpoint,
)
from tmesh.bench.endpoint.models import kv_bytes_per_token
from tmesh.bench.endpoint.openai import tokenize_url
from tmesh.bench.endpoint.session import open_session
from tmesh.bench.load.client import ClientConfig
from tmesh.bench.load.http import Pool
from tmesh.bench.load.runner import LoopControl, Stopper, StopRules
from tmesh.bench.load.traffic import Traffic, TrafficKind, make_loop
from tmesh.bench.load.workers import WorkerPool, worker_tasks
from tmesh.bench.measure.goodput import parse_slo
from tmesh.bench.measure.prometheus import ServerSample
from tmesh.bench.measure.recorder import Recorder
from tmesh.bench.measure.servermetrics import ServerMetricsScraper, default_metrics_url
from tmesh.bench.measure.sessions import parse_gap_buckets
from tmesh.bench.measure.verdict import summarize_cache, verdict_so_far
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output import console
from tmesh.bench.output.exporter import Exporter, check_port
from tmesh.bench.output.view import View
from tmesh.bench.workload.counting import ServerTokenizer, choose_oracle, request_overhead
from tmesh.bench.workload.prompts import PromptSet, build_prompt_set
from tmesh.bench.workload.session_setup import prepare_sessions
from tmesh.bench.workload.sessions import AnswerCosts, Recount, SessionTexts
from tmesh.bench.workload.sizing import (
    longest_session_prompt,
    resolve_kv_bytes,
    scheduled_cap,
    size_sessions,
    size_workload,
)
from tmesh.bench.workload.tokens import LocalTokenizer, TokenOracle
from tmesh.results.records import (
    ClientHealth,
    IntervalSnapshot,
    RequestRecord,
    RunSummary,
    SessionSpec,
    StopReason,
    WorkloadSpec,
)
from tmesh.results.rundir import RunFiles, RunFilesError, check_run_dir, default_run_dir
from tmesh.text import mask_key, scrub

DISCOVERY_TIMEOUT_S = 10.0
# Tokens a question adds at most, before the prompts exist to say exactly; and a chat template
# per message, for sessions.
QUESTION_ROOM = 64
# A second Ctrl-C ends the process at once with the shell's code for SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class BenchmarkError(Exception):
    """A problem found before the run starts: reported in one line, exit code 2."""


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


@dataclass
class Local:
    """What the checks that need no server found: the run folder to create, the local
    tokenizer loaded, the KV size per token from the flag or the model's config."""

    run_dir: Path
    tokenizer: LocalTokenizer | None = None
    kv_bytes: int | None = None


def check_local(opts: BenchmarkOptions) -> Local:
    """Every check that needs no server, before any network work: a mistake a user can fix
    from the command line should not wait for discovery and the prompts (exit 2, one line,
    nothing left behind)."""
    if opts.endpoint is not None:
        normalize_endpoint(opts.endpoint)
    run_dir = opts.output_dir or default_run_dir()
    check_run_dir(run_dir)
    if opts.prometheus_port:
        check_port(opts.prometheus_port)
    tokenizer = LocalTokenizer(opts.tokenizer) if opts.tokenizer is not None else None
    kv_bytes = None
    if opts.kv_bytes_per_token is not None or opts.model_config is not None:
        kv_bytes = resolve_kv_bytes("", opts.kv_bytes_per_token, opts.model_config)
    if kv_bytes is not None or opts.num_contexts is not None or opts.workload == "sessions":
        _size_as_asked(opts, "", kv_bytes)
    return Local(run_dir, tokenizer, kv_bytes)


@dataclass
class Prepared:
    """What set-up produced: the target, the workload and its prompts (for sessions, the
    system prompt as a one-context prompt set, and the texts of the conversations), and where
    the run's files go (the default folder when None)."""

    base_url: str
    discovery: Discovery
    spec: WorkloadSpec
    prompts: PromptSet
    ignore_eos: bool
    run_dir: Path | None = None
    sessions: SessionTexts | None = None


def _waiting(view: View, patience: float) -> Callable[[str, float], None]:
    def say(cause: str, left: float) -> None:
        view.countdown(
            f"waiting for the server: {cause}; retrying for {left:.0f} s more "
            f"(--connect-timeout {patience:g})"
        )

    return say


async def prepare(opts: BenchmarkOptions, view: View, local: Local) -> Prepared:
    """Discover the model, size the workload and build its prompts (exit 2 on any failure)."""
    base_url = normalize_endpoint(opts.endpoint or "")
    headers = auth_headers(opts.api_key)
    async with open_session(4, opts.insecure) as session:
        found = await discover_patiently(
            session, base_url, opts.api_key, opts.model, DISCOVERY_TIMEOUT_S,
            opts.connect_timeout, _waiting(view, opts.connect_timeout),
        )  # fmt: skip
        view.out(
            console.format_discovery(
                opts.endpoint or base_url,
                mask_key(opts.api_key),
                base_url,
                found.model,
                opts.offload_size,
                found.models,
            )
        )
        spec = _size(opts, found, local.kv_bytes)
        ignore_eos = await probe_ignore_eos(session, base_url, found.model, spec.api, headers)
        view.progress("choosing a token counter…")
        oracle = local.tokenizer or await choose_oracle(
            session, base_url, found.model, spec.api, headers, progress=view.progress
        )
        if spec.sessions is not None:
            texts = await prepare_sessions(
                session, base_url, headers, spec, oracle, ignore_eos,
                _recount(opts, oracle, base_url, found.model, headers), view.progress,
            )  # fmt: skip
            system = PromptSet(
                [texts.system], [[""]], [texts.system_tokens], [[0]], oracle.name, oracle.exact,
                texts.framing.overhead,
            )  # fmt: skip
            return Prepared(base_url, found, spec, system, ignore_eos, local.run_dir, texts)
        overhead = await request_overhead(session, base_url, found.model, spec.api, headers, oracle)
        started = time.monotonic()
        prompt_set = await build_prompt_set(spec, oracle, progress=view.progress)
        prompt_set.overhead = overhead or 0
        view.progress(
            f"built {spec.num_contexts} contexts of {spec.input_length} tokens "
            f"with {oracle.name} in {time.monotonic() - started:.1f} s"
        )
    _check_fits(spec, prompt_set, found.context)
    return Prepared(base_url, found, spec, prompt_set, ignore_eos, local.run_dir)


def _recount(
    opts: BenchmarkOptions,
    oracle: TokenOracle,
    base_url: str,
    model: str,
    headers: dict[str, str],
) -> Recount | None:
    """Where answers can be counted again, in any process: the tokenizer file or the server's
    `/tokenize` (in its dialect) the oracle uses; an approximate oracle counts no better than
    the server's completion count."""
    if opts.tokenizer is not None:
        return Recount(tokenizer=opts.tokenizer)
    if isinstance(oracle, ServerTokenizer):
        return Recount(None, tokenize_url(base_url), model, tuple(headers.items()), oracle.dialect)
    return None


def _size(opts: BenchmarkOptions, found: Discovery, kv_bytes: int | None) -> WorkloadSpec:
    if kv_bytes is None and (opts.num_contexts is not None or opts.workload == "sessions"):
        # Contexts given by hand: the KV geometry only informs the verdict, so unknown is fine.
        kv_bytes = kv_bytes_per_token(found.model)
    elif kv_bytes is None:
        kv_bytes = resolve_kv_bytes(found.model, None, None)
    spec = _size_as_asked(opts, found.model, kv_bytes)
    limit = found.context
    if spec.sessions is not None:
        _check_session_fits(spec, limit)
    elif (
        limit is not None and spec.input_length + spec.output_length + QUESTION_ROOM > limit.tokens
    ):
        raise BenchmarkError(_too_long(spec, limit, "plus a question"))
    return spec


def _size_as_asked(opts: BenchmarkOptions, model: str, kv_bytes: int | None) -> WorkloadSpec:
    if opts.workload == "sessions":
        return _size_sessions(opts, model, kv_bytes)
    spec = size_workload(
        model,
        kv_bytes,
        opts.offload_size,
        opts.input_length,
        opts.output_length,
        num_contexts=opts.num_contexts,
        questions_per_context=opts.questions_per_context,
        max_inflight=opts.max_inflight,
        seed=opts.seed,
        api=opts.api,
    )
    if opts.max_inflight is None:
        spec = replace(spec, max_inflight=scheduled_cap(spec.max_inflight, opts.request_rate))
    return replace(spec, request_rate=opts.request_rate, arrival=opts.arrival)


def _size_sessions(opts: BenchmarkOptions, model: str, kv_bytes: int | None) -> WorkloadSpec:
    sessions = SessionSpec(
        system_prompt=opts.system_prompt,
        turns=opts.turns,
        turn_input=opts.turn_input,
        think_time=opts.think_time,
        think_time_dist=opts.think_time_dist,
        users=opts.users,
        session_rate=opts.session_rate,
    )
    spec = size_sessions(
        model, kv_bytes, opts.offload_size, opts.output_length, sessions,
        max_inflight=opts.max_inflight, seed=opts.seed, api=opts.api,
    )  # fmt: skip
    return replace(spec, arrival=opts.arrival)


def _check_session_fits(spec: WorkloadSpec, limit: ContextLimit | None) -> None:
    """A session's last turn (system prompt, every turn and answer, a chat template's markers
    per message) with its answer must fit the server's context."""
    assert spec.sessions is not None
    longest = longest_session_prompt(spec)
    turns = spec.sessions.turns
    room = QUESTION_ROOM * (1 + 2 * turns if spec.api == "chat" else 1)
    if limit is not None and longest + spec.output_length + room > limit.tokens:
        raise BenchmarkError(
            f"a session's last turn holds {longest} tokens (--system-prompt + --turns x "
            f"--turn-input + the answers) + --output-length {spec.output_length}, more than the "
            f"server's context of {limit.tokens} tokens ({limit.source}); pass fewer --turns or "
            "shorter lengths"
        )


def _check_fits(spec: WorkloadSpec, prompts: PromptSet, limit: ContextLimit | None) -> None:
    """The longest prompt as planned, with the output, must fit the server's context: a server
    refuses a longer prompt, or stops generating early, on every request."""
    if limit is None or not prompts.context_tokens:
        return
    longest = max(
        context + max(questions) + prompts.overhead
        for context, questions in zip(prompts.context_tokens, prompts.question_tokens, strict=True)
    )
    if longest + spec.output_length > limit.tokens:
        raise BenchmarkError(_too_long(spec, limit, f"a prompt of up to {longest} tokens"))


def _too_long(spec: WorkloadSpec, limit: ContextLimit, prompt: str) -> str:
    return (
        f"--input-length {spec.input_length} + --output-length {spec.output_length} ({prompt}) "
        f"exceeds the server's context of {limit.tokens} tokens ({limit.source}); "
        "pass smaller lengths"
    )


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

    def on_record(self, record: RequestRecord) -> None:
        self.recorder.add(record)
        self._write(self.files.append_request, record)
        if self.exporter:
            self.exporter.observe(record)

    async def on_tick(self, now: float, health: ClientHealth) -> None:
        self.view.interval(await self.close_interval(now, health))

    async def close_interval(self, now: float, health: ClientHealth) -> IntervalSnapshot:
        """Scrape the server and close the interval; also run once at stop for the last part."""
        server = await self._scrape_interval()
        snap = self.recorder.snapshot(now, server=server, health=health)
        snap.verdict = verdict_so_far(snap, self.prep.spec, self.first_sample, self.last_sample)
        self._write(self.files.append_interval, snap)
        if self.exporter:
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
        summarize_cache(summary, self.prep.spec, self.scraper, self.first_sample, self.last_sample)
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
) -> Outcome:
    """Run the load loop until a stop rule, a signal or `stopper`, and show the summary;
    `on_interval` gets each interval's snapshot as it is written, the last (partial) one too."""
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

        loop = run.loop = _load_loop(opts, prep, run, pool, config, session)
        if stopper is not None:
            stopper.attach(loop)
        try:
            with _signals(loop, run, view):
                state = await loop.run()
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
) -> LoopControl:
    """One event loop in this process, or `--workers` processes sharing the workload."""
    rules = StopRules(
        duration=opts.duration,
        max_requests=opts.max_requests,
        max_consecutive_errors=opts.max_consecutive_errors,
        grace_s=opts.grace,
    )
    traffic = _traffic(prep)
    if opts.workers > 1:
        tasks = worker_tasks(
            opts.workers, traffic, config, run.origin, opts.insecure, opts.interval, rules
        )
        return WorkerPool(tasks, run.on_record, run.on_tick, rules, run.origin, opts.interval)
    costs = AnswerCosts(prep.sessions, session) if prep.sessions else None
    return make_loop(
        traffic, pool, config, costs, run.on_record, run.on_tick, rules, run.origin, opts.interval
    )


def _traffic(prep: Prepared) -> Traffic:
    spec = prep.spec
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
