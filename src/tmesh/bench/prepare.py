"""Before the first request of a run: the checks that need no server, discovery, sizing, the token
counter and the prompts, and the checks that the prompts fit the server's context.

Every problem found here is one line and exit code 2, and leaves nothing behind: the run has not
started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

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
from tmesh.bench.options import BenchmarkOptions
from tmesh.bench.output import console
from tmesh.bench.output.exporter import check_port
from tmesh.bench.output.view import View
from tmesh.bench.workload.counting import ServerTokenizer, choose_oracle, request_overhead
from tmesh.bench.workload.prompts import PromptSet, build_prompt_set
from tmesh.bench.workload.replay import Replay, prepare_replay
from tmesh.bench.workload.session_setup import prepare_sessions
from tmesh.bench.workload.sessions import Recount, SessionTexts
from tmesh.bench.workload.sizing import (
    longest_session_prompt,
    resolve_kv_bytes,
    scheduled_cap,
    size_sessions,
    size_workload,
)
from tmesh.bench.workload.tokens import LocalTokenizer, TokenOracle
from tmesh.bench.workload.trace import Trace, load_trace
from tmesh.results.records import (
    SessionSpec,
    WorkloadSpec,
)
from tmesh.results.rundir import check_run_dir, default_run_dir
from tmesh.text import mask_key

DISCOVERY_TIMEOUT_S = 10.0
# Tokens a question adds at most, before the prompts exist to say exactly; and a chat template
# per message, for sessions.
QUESTION_ROOM = 64


class BenchmarkError(Exception):
    """A problem found before the run starts: reported in one line, exit code 2."""


@dataclass
class Local:
    """What the checks that need no server found: the run folder to create, the local
    tokenizer loaded, the KV size per token from the flag or the model's config, the trace read
    and checked."""

    run_dir: Path
    tokenizer: LocalTokenizer | None = None
    kv_bytes: int | None = None
    trace: Trace | None = None


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
    if opts.trace is not None and opts.workers > 1:
        raise BenchmarkError("a trace is replayed by one process: leave out --workers")
    trace = load_trace(opts.trace, opts.trace_format, opts.block_size) if opts.trace else None
    return Local(run_dir, tokenizer, kv_bytes, trace)


@dataclass
class Prepared:
    """What set-up produced: the target, the workload and its prompts (for sessions, the
    system prompt as a one-context prompt set, and the texts of the conversations; for a trace,
    its replay and a prompt set of no contexts that carries how tokens were counted), and where
    the run's files go (the default folder when None)."""

    base_url: str
    discovery: Discovery
    spec: WorkloadSpec
    prompts: PromptSet
    ignore_eos: bool
    run_dir: Path | None = None
    sessions: SessionTexts | None = None
    replay: Replay | None = None


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
        trace = local.trace
        spec = _size(opts, found, local.kv_bytes) if trace is None else None
        ignore_eos = await probe_ignore_eos(session, base_url, found.model, opts.api, headers)
        view.progress("choosing a token counter…")
        oracle = local.tokenizer or await choose_oracle(
            session, base_url, found.model, opts.api, headers, progress=view.progress
        )
        if spec is not None and spec.sessions is not None:
            texts = await prepare_sessions(
                session, base_url, headers, spec, oracle, ignore_eos,
                _recount(opts, oracle, base_url, found.model, headers), view.progress,
            )  # fmt: skip
            system = PromptSet(
                [texts.system], [[""]], [texts.system_tokens], [[0]], oracle.name, oracle.exact,
                texts.framing.overhead,
            )  # fmt: skip
            return Prepared(base_url, found, spec, system, ignore_eos, local.run_dir, texts)
        overhead = await request_overhead(session, base_url, found.model, opts.api, headers, oracle)
        if spec is None:
            assert trace is not None
            replay = await _replay(opts, trace, oracle, overhead or 0, view)
            spec = _trace_spec(opts, found, replay, local.kv_bytes)
            prompts = PromptSet([], [], [], [], oracle.name, replay.book.exact, overhead or 0)
            return Prepared(
                base_url, found, spec, prompts, ignore_eos, local.run_dir, replay=replay
            )
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


async def _replay(
    opts: BenchmarkOptions, trace: Trace, oracle: TokenOracle, overhead: int, view: View
) -> Replay:
    replay = await prepare_replay(
        trace, oracle, seed=opts.seed, max_requests=opts.max_requests, loop=opts.loop,
        time_scale=opts.time_scale, progress=view.progress,
    )  # fmt: skip
    replay.overhead = overhead
    view.out(replay.describe())
    return replay


def _trace_spec(
    opts: BenchmarkOptions, found: Discovery, replay: Replay, kv_bytes: int | None
) -> WorkloadSpec:
    """The trace's figures in the shape of a workload: its first blocks as contexts, its mean
    lengths; every request must fit the server's context."""
    rows = replay.trace.requests[: len(replay.blocks)]
    limit = found.context
    longest = max(rows, key=lambda r: r.input_length + r.output_length)
    if (
        limit is not None
        and longest.input_length + longest.output_length + replay.overhead > limit.tokens
    ):
        raise BenchmarkError(
            f"--trace {opts.trace} line {longest.line}: input_length {longest.input_length} + "
            f"output_length {longest.output_length} exceeds the server's context of "
            f"{limit.tokens} tokens ({limit.source})"
        )
    spec = size_workload(
        found.model,
        kv_bytes or kv_bytes_per_token(found.model),
        opts.offload_size,
        round(sum(r.input_length for r in rows) / len(rows)),
        round(sum(r.output_length for r in rows) / len(rows)),
        num_contexts=replay.num_contexts,
        questions_per_context=1,
        max_inflight=opts.max_inflight,
        seed=opts.seed,
        api=opts.api,
    )
    if opts.max_inflight is not None or opts.trace_timing != "trace":
        return spec
    rate = len(rows) * replay.time_scale / max(replay.trace.span, 1.0)
    return replace(spec, max_inflight=scheduled_cap(spec.max_inflight, rate))


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
