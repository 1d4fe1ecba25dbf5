"""The benchmark's options as keywords: checked as the flags are, and checked together.

`BenchmarkOptions` declares every option once; the command line builds its flags from it and
the Python API takes the same names as keywords with the same defaults. The checks here are the
ones both share: a value's type and bounds (the flags' parsers do these for the command line)
and the options that parse one by one but not together.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tmesh.bench.options import BenchmarkOptions
from tmesh.fieldspec import OptionError, flag_name, problem, spec_of
from tmesh.sim.profiles import PROFILES

KEY_VARIABLES = ("TMESH_API_KEY", "OPENAI_API_KEY")
Naming = Callable[[str], str]
_FIELDS = {field.name: field for field in dataclasses.fields(BenchmarkOptions)}
_HINTS = typing.get_type_hints(BenchmarkOptions)


def flag(name: str) -> str:
    """An option as the command line names it: `--max-inflight`, `--no-server-metrics`."""
    return flag_name(_FIELDS[name])


def keyword(name: str) -> str:
    """An option as the Python API names it: `max_inflight`, `server_metrics=False`."""
    spec = spec_of(_FIELDS[name])
    return f"{name}=False" if spec is not None and spec.negate else name


def key_from_environment() -> str | None:
    return next(filter(None, map(os.environ.get, KEY_VARIABLES)), None)


def benchmark_options(**given: Any) -> BenchmarkOptions:
    """The options from keywords: unknown names, wrong types and out-of-bounds values refused
    in one line naming the keyword; the key falls back on the environment."""
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise OptionError(f"unknown option {unknown[0]!r}; the options: {', '.join(_FIELDS)}")
    values = {name: _typed(name, value) for name, value in given.items()}
    opts = BenchmarkOptions(**values)
    if opts.api_key is None:
        opts.api_key = key_from_environment()
    for name in _FIELDS:
        why = problem(_FIELDS[name], getattr(opts, name))
        if why is not None:
            raise OptionError(f"{name} must be {why}, not {getattr(opts, name)!r}")
    why = conflict(opts, keyword)
    if why is not None:
        raise OptionError(why)
    if opts.ray is not None:
        raise OptionError("ray: a run on a Ray cluster starts from `tmesh-cli benchmark --ray`")
    return opts


def _typed(name: str, value: Any) -> Any:
    """`value` as the option's type (a `str` path made a `Path`), or `OptionError`."""
    hint = _HINTS[name]
    union = typing.get_origin(hint) is not typing.Literal and typing.get_args(hint)
    kinds = [k for k in union or (hint,) if k is not type(None)]
    if value is None and type(None) in (union or ()):
        return None
    kind = str if typing.get_origin(kinds[0]) is typing.Literal else kinds[0]
    if kind is Path and isinstance(value, (str, os.PathLike)):
        return Path(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise OptionError(f"{name} must be {_kind_name(kind)}, not {value!r}")


def _kind_name(kind: Any) -> str:
    return {bool: "True or False", int: "an integer", float: "a number", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def conflict(opts: BenchmarkOptions, name: Naming) -> str | None:
    """Options that are fine one by one but not together, in one line (`name` says each option
    as the caller knows it: a flag, or a keyword)."""
    if not opts.demo and not opts.endpoint:
        return (
            f"{name('endpoint')} is required (or use {name('demo')} for the built-in "
            "simulated engine)"
        )
    if opts.demo and opts.endpoint:
        return f"{name('demo')} runs against the built-in simulated engine: drop {name('endpoint')}"
    if opts.profile is not None and not opts.demo:
        demo = name("demo")
        return f"{name('profile')} chooses the simulated engine of {demo}: add {demo}"
    if opts.profile is not None and opts.profile not in PROFILES:
        return f"unknown {name('profile')} {opts.profile!r}; choose from {', '.join(PROFILES)}"
    if sum((opts.quiet, opts.json, opts.live)) > 1:
        return f"choose at most one of {name('quiet')}, {name('json')}, {name('live')}"
    if opts.api_key is not None and (not opts.api_key.isprintable() or " " in opts.api_key):
        return f"{name('api_key')} holds spaces or control characters (a pasted newline?)"
    return (
        _telemetry_conflict(opts, name)
        or _traffic_conflict(opts, name)
        or _warmup_conflict(opts, name)
        or _spread_conflict(opts, name)
    )


def _telemetry_conflict(opts: BenchmarkOptions, name: Naming) -> str | None:
    if opts.metrics_url is None:
        return None
    if not opts.server_metrics:
        return f"{name('metrics_url')} and {name('server_metrics')} contradict each other"
    parts = urlsplit(opts.metrics_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name('metrics_url')} {opts.metrics_url!r} is not an http(s) URL"
    return None


def _traffic_conflict(opts: BenchmarkOptions, name: Naming) -> str | None:
    """The traffic options that do not go together."""
    sessions = opts.workload == "sessions"
    if opts.trace is not None and (sessions or opts.request_rate is not None):
        given = f"{name('workload')} sessions" if sessions else name("request_rate")
        return (
            f"{given} does not go with {name('trace')}: a trace brings its requests and their times"
        )
    if sessions and opts.request_rate is not None:
        return (
            f"{name('request_rate')} is the contexts' open loop; sessions arrive with "
            f"{name('session_rate')}"
        )
    if not sessions and (opts.session_rate is not None or opts.find_max_users):
        given = name("session_rate" if opts.session_rate is not None else "find_max_users")
        return f"{given} needs {name('workload')} sessions"
    if opts.find_max_users and (not opts.slo or opts.session_rate is not None):
        return (
            f"{name('find_max_users')} needs {name('slo')} and a user count "
            f"(not {name('session_rate')})"
        )
    if opts.gpu_kv_tokens is not None and not opts.demo:
        return f"{name('gpu_kv_tokens')} sizes the simulated engine of {name('demo')}"
    return None


def _warmup_conflict(opts: BenchmarkOptions, name: Naming) -> str | None:
    if opts.duration is not None and opts.warmup >= opts.duration:
        return (
            f"{name('warmup')} {opts.warmup:g} leaves nothing of {name('duration')} "
            f"{opts.duration:g} for the steady-state figures"
        )
    return None


def _spread_conflict(opts: BenchmarkOptions, name: Naming) -> str | None:
    """The options of a run spread over processes or actors that do not go together."""
    if opts.ray is None:
        if opts.ray_actors is not None or not opts.gather:
            given = name("ray_actors" if opts.ray_actors is not None else "gather")
            return f"{given} needs {name('ray')}"
        if opts.tolerate_actor_loss and opts.workers < 2:
            return (
                f"{name('tolerate_actor_loss')} needs {name('ray')} or {name('workers')} 2 or more"
            )
        return None
    if opts.workers > 1:
        return f"{name('ray')} and {name('workers')} are two ways to spread the load: choose one"
    if opts.find_max_users:
        return f"{name('find_max_users')} runs on one machine: drop {name('ray')}"
    return None
