"""How big the workload is: enough contexts to fill 90 % of the KV offload buffer.

The working set is sized from the offload buffer so that, with the GPU cache far smaller,
revisiting a context must come from the offload tier (or be recomputed): that is the effect the
benchmark exists to show. With the defaults, gpt-oss-20b at 100 GB gets 61 contexts, 61 questions
per context and 20 requests in flight.
"""

from __future__ import annotations

import math
from pathlib import Path

from tmesh.bench.endpoint.models import ModelConfigError, kv_bytes_from_config, kv_bytes_per_token
from tmesh.results.records import APIS, Api, SessionSpec, WorkloadSpec

FILL_FRACTION = 0.9
GIB = 2**30
SCHEDULE_SECONDS = 10.0
"""An open loop's default in-flight cap holds this many seconds of arrivals: a safety cap that
binds only when the server falls far behind."""


class SizingError(ValueError):
    """The workload cannot be sized from what was given; the message is one line."""


def contexts_for(
    kv_bytes: int, offload_size_gb: float, input_length: int, output_length: int
) -> int:
    """Contexts whose KV (prompt and output) fill 90 % of the offload buffer."""
    per_context = kv_bytes * (input_length + output_length)
    return math.floor(FILL_FRACTION * offload_size_gb * GIB / per_context)


def size_workload(
    model: str,
    kv_bytes_per_token: int | None,
    offload_size_gb: float,
    input_length: int = 32000,
    output_length: int = 100,
    *,
    num_contexts: int | None = None,
    questions_per_context: int | None = None,
    max_inflight: int | None = None,
    seed: int = 0,
    api: str = "completions",
) -> WorkloadSpec:
    """Contexts, questions and in-flight limit sized from the offload buffer, every value
    overridable; `kv_bytes_per_token` may be None only when `num_contexts` is given, since then
    nothing depends on it."""
    _at_least_one("--input-length", input_length)
    _at_least_one("--output-length", output_length)
    if not offload_size_gb > 0 or math.isinf(offload_size_gb):
        raise SizingError(f"--offload-size must be a positive number of GB, got {offload_size_gb}")
    if api not in APIS:
        raise SizingError(f"--api must be one of {', '.join(APIS)}, got {api!r}")
    if kv_bytes_per_token is not None:
        _at_least_one("--kv-bytes-per-token", kv_bytes_per_token)
    for flag, value in (
        ("--num-contexts", num_contexts),
        ("--questions-per-context", questions_per_context),
        ("--max-inflight", max_inflight),
    ):
        if value is not None:
            _at_least_one(flag, value)
    contexts = num_contexts or _sized_contexts(
        kv_bytes_per_token, offload_size_gb, input_length, output_length
    )
    return WorkloadSpec(
        model=model,
        num_contexts=contexts,
        questions_per_context=questions_per_context or contexts,
        max_inflight=max_inflight or max(1, contexts // 3),
        input_length=input_length,
        output_length=output_length,
        kv_bytes_per_token=kv_bytes_per_token,
        offload_size_gb=offload_size_gb,
        seed=seed,
        api=api,
    )


def scheduled_cap(sized: int, rate: float | None) -> int:
    """The in-flight cap of an open loop at `rate` requests per second (`sized` in a closed
    one)."""
    return sized if rate is None else max(sized, math.ceil(SCHEDULE_SECONDS * rate))


def size_sessions(
    model: str,
    kv_bytes_per_token: int | None,
    offload_size_gb: float,
    output_length: int,
    sessions: SessionSpec,
    *,
    max_inflight: int | None = None,
    seed: int = 0,
    api: Api = "completions",
) -> WorkloadSpec:
    """A sessions workload. It has no contexts of its own: `num_contexts` is its users,
    `questions_per_context` its turns, `input_length` its system prompt. Its in-flight cap is
    its users (each has at most one turn in flight), or, with a session rate, ten seconds of
    turns at the rate the sessions would send them back to back."""
    _at_least_one("--output-length", output_length)
    rate = sessions.session_rate
    sized = sessions.users if rate is None else math.ceil(SCHEDULE_SECONDS * rate * sessions.turns)
    return WorkloadSpec(
        model=model,
        num_contexts=sessions.users,
        questions_per_context=sessions.turns,
        max_inflight=max_inflight or max(1, sized),
        input_length=sessions.system_prompt,
        output_length=output_length,
        kv_bytes_per_token=kv_bytes_per_token,
        offload_size_gb=offload_size_gb,
        seed=seed,
        api=api,
        workload="sessions",
        sessions=sessions,
    )


def longest_session_prompt(spec: WorkloadSpec) -> int:
    """Tokens of a session's last turn, before the template's own."""
    sessions = spec.sessions
    assert sessions is not None
    turns = sessions.turns
    return sessions.system_prompt + turns * sessions.turn_input + (turns - 1) * spec.output_length


def _sized_contexts(
    kv_bytes: int | None, offload_size_gb: float, input_length: int, output_length: int
) -> int:
    if kv_bytes is None:
        raise SizingError(
            "the KV size per token is unknown: pass --kv-bytes-per-token, --model-config, "
            "or --num-contexts"
        )
    contexts = contexts_for(kv_bytes, offload_size_gb, input_length, output_length)
    if contexts < 1:
        need = kv_bytes * (input_length + output_length) / (FILL_FRACTION * GIB)
        raise SizingError(
            f"--offload-size {offload_size_gb:g} GB holds no context of "
            f"{input_length + output_length} tokens at {kv_bytes} bytes/token "
            f"(needs at least {need:.2f} GB); raise --offload-size or pass --num-contexts"
        )
    return contexts


def resolve_kv_bytes(
    model: str, kv_bytes_flag: int | None, model_config_path: str | Path | None
) -> int:
    """KV bytes per token, first source that answers: the flag, the config file, the table."""
    if kv_bytes_flag is not None:
        _at_least_one("--kv-bytes-per-token", kv_bytes_flag)
        return kv_bytes_flag
    if model_config_path is not None:
        try:
            return kv_bytes_from_config(model_config_path)
        except ModelConfigError as exc:
            raise SizingError(str(exc)) from exc
    known = kv_bytes_per_token(model)
    if known is None:
        raise SizingError(
            f"no built-in KV geometry for model {model!r}: pass --kv-bytes-per-token N or "
            "--model-config path/to/config.json"
        )
    return known


def _at_least_one(flag: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SizingError(f"{flag} must be a whole number >= 1, got {value!r}")
