"""`tmesh-cli simulate`: the simulated engine as a standalone OpenAI-compatible server.

One flag per `EngineConfig` field, so figures measured on a real server can be pasted in; each
flag only overrides the chosen profile when given.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from tmesh.cli.flags import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, number, within
from tmesh.sim.config import EngineConfig
from tmesh.sim.faults import ERROR_BODIES, FaultConfig
from tmesh.sim.profiles import DEFAULT_PROFILE, PROFILES, describe_profiles
from tmesh.sim.server import start_simulator

DEFAULT_PORT = 8000

# What each EngineConfig knob means, with its unit: (metavar, help). The flag is the field name
# with dashes; its default (the profile's value) is appended to the help line. `name` is the
# profile's label, not a knob, so it has no flag.
ENGINE_FLAGS: dict[str, tuple[str, str]] = {
    "model": ("MODEL", "served model name (the id in /v1/models)"),
    "max_model_len": ("TOKENS", "longest prompt + output the server accepts, in tokens"),
    "kv_bytes_per_token": ("BYTES", "KV cache bytes per token"),
    "gpu_kv_tokens": ("TOKENS", "GPU KV cache capacity in tokens"),
    "block_size": ("TOKENS", "KV block size in tokens"),
    "max_num_batched_tokens": ("TOKENS", "token budget of one engine step"),
    "max_num_seqs": ("N", "most sequences running in one step"),
    "vocab_size": ("N", "tokenizer vocabulary size"),
    "t_fixed_s": ("SECONDS", "fixed cost of every engine step, in seconds"),
    "linear_s_per_token": ("SECONDS", "linear-layer cost per computed token, in seconds"),
    "attn_s_per_pair": (
        "SECONDS",
        "attention cost per (new token, context token) pair, in seconds",
    ),
    "weight_floor_s": ("SECONDS", "weight-read floor of one step, in seconds"),
    "kv_read_s_per_token": ("SECONDS", "decode KV-read cost per context token, in seconds"),
    "per_seq_s": ("SECONDS", "per-sequence cost of one step, in seconds"),
    "api_overhead_s": (
        "SECONDS",
        "front-end delay before a request reaches the engine, in seconds",
    ),
    "tokenize_s_per_token": ("SECONDS", "front-end tokenizing delay per prompt token, in seconds"),
    "cpu_offload_gb": ("GIB", "CPU KV offload tier size in GiB (0 = off)"),
    "cpu_load_gbps": ("GB/S", "CPU-to-GPU KV load bandwidth in GB/s"),
    "cpu_store_gbps": ("GB/S", "GPU-to-CPU KV store bandwidth in GB/s"),
    "per_op_latency_s": ("SECONDS", "fixed latency of each CPU-tier transfer, in seconds"),
    "time_scale": ("FACTOR", "multiplier on every modelled duration (0.01 = 100x faster)"),
    "seed": ("N", "seed of the engine's random jitter"),
    "jitter": ("SIGMA", "sigma of the log-normal jitter on step times (0 = none)"),
}


_rate = number(float, within(0, 1))
_seconds = number(float, within(0))
_tokens = number(int, within(0))


def _retry_after(text: str) -> float | None:
    return None if text.lower() == "none" else _seconds(text)


def _statuses(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `tmesh-cli simulate`."""
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    server.add_argument(
        "--port",
        type=number(int, within(0, 65535)),
        default=DEFAULT_PORT,
        help=f"TCP port to listen on, 0 = any free port (default: {DEFAULT_PORT})",
    )
    server.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=DEFAULT_PROFILE,
        help=f"engine profile the flags below override (default: {DEFAULT_PROFILE})",
    )
    server.add_argument(
        "--list-profiles", action="store_true", help="describe the profiles and exit"
    )
    server.add_argument("--api-key", help="require this bearer key on /v1 routes (default: no key)")
    server.add_argument(
        "--no-prompt-tokens-details",
        action="store_true",
        help="leave usage.prompt_tokens_details.cached_tokens out, as vLLM does by default",
    )
    _add_engine_arguments(parser.add_argument_group("engine (each overrides the profile)"))
    _add_fault_arguments(parser.add_argument_group("fault injection (all off by default)"))


def _add_engine_arguments(group: argparse._ArgumentGroup) -> None:
    base = PROFILES[DEFAULT_PROFILE]
    for field in _knobs():
        metavar, text = ENGINE_FLAGS[field.name]
        default = getattr(base, field.name)
        shown = f"{default:g}" if isinstance(default, float) else default
        group.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=f"engine_{field.name}",
            type=type(default),
            metavar=metavar,
            help=f"{text} (default: the profile's; {shown} in {DEFAULT_PROFILE})",
        )


def _knobs() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(EngineConfig) if f.name != "name"]


def _add_fault_arguments(group: argparse._ArgumentGroup) -> None:
    d = FaultConfig()
    rates = [
        ("--fault-error-rate", "error_rate", "share of requests answered with an HTTP error"),
        ("--fault-429-rate", "rate_429", "share of requests answered with 429"),
        ("--fault-cut-rate", "cut_rate", "share of streams cut off abruptly"),
        ("--fault-stall-rate", "stall_rate", "share of requests that stall"),
        ("--fault-malformed-rate", "malformed_rate", "share of streams with a non-JSON event"),
        (
            "--fault-error-in-stream-rate",
            "error_in_stream_rate",
            "share of 200 streams that end with an error object",
        ),
    ]
    for flag, dest, text in rates:
        group.add_argument(
            flag, dest=f"fault_{dest}", type=_rate, default=0.0, metavar="P",
            help=f"{text}, 0..1 (default: 0)",
        )  # fmt: skip
    statuses = ",".join(str(s) for s in d.error_statuses)
    options: list[tuple[str, str, Callable[[str], Any], Any, str, str]] = [
        ("--fault-error-status", "error_statuses", _statuses, d.error_statuses, "STATUSES",
         f"comma-separated statuses of injected errors (default: {statuses})"),
        ("--fault-error-body", "error_body", str, d.error_body, "STYLE",
         f"body of injected errors: {', '.join(ERROR_BODIES)} (default: {d.error_body})"),
        ("--fault-retry-after", "retry_after", _retry_after, d.retry_after, "SECONDS",
         f"Retry-After of injected 429s, or 'none' (default: {d.retry_after:g})"),
        ("--fault-cut-after", "cut_after", _tokens, d.cut_after, "TOKENS",
         f"tokens sent before a cut (default: {d.cut_after})"),
        ("--fault-stall-seconds", "stall_seconds", _seconds, d.stall_seconds, "SECONDS",
         f"length of a stall in seconds (default: {d.stall_seconds:g})"),
        ("--fault-stall-after", "stall_after", _tokens, d.stall_after, "TOKENS",
         f"tokens sent before a stall, 0 = before the headers (default: {d.stall_after})"),
        ("--fault-seed", "seed", int, d.seed, "N",
         f"seed of the fault draws (default: {d.seed})"),
    ]  # fmt: skip
    for flag, dest, kind, default, metavar, text in options:
        group.add_argument(
            flag, dest=f"fault_{dest}", type=kind, default=default, metavar=metavar, help=text
        )


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    """The chosen profile with every given override applied; ValueError names a bad value."""
    overrides = {
        field.name: getattr(args, f"engine_{field.name}")
        for field in _knobs()
        if getattr(args, f"engine_{field.name}") is not None
    }
    return dataclasses.replace(PROFILES[args.profile], **overrides)


def fault_config_from_args(args: argparse.Namespace) -> FaultConfig:
    """The fault flags as a FaultConfig; ValueError names a bad combination."""
    return FaultConfig(
        **{
            field.name: getattr(args, f"fault_{field.name}")
            for field in dataclasses.fields(FaultConfig)
        }
    )


def run_command(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM (exit 0); bad flags exit 2, an unusable address exit 1."""
    if args.list_profiles:
        print(describe_profiles())
        return EXIT_OK
    try:
        config = engine_config_from_args(args)
        faults = fault_config_from_args(args)
    except ValueError as exc:
        print(f"tmesh-cli simulate: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING, stream=sys.stderr
    )
    logging.getLogger("tmesh.sim").setLevel(logging.INFO)
    try:
        return asyncio.run(_serve(config, faults, args))
    except KeyboardInterrupt:
        return EXIT_OK


async def _serve(config: EngineConfig, faults: FaultConfig, args: argparse.Namespace) -> int:
    try:
        handle = await start_simulator(
            config,
            args.host,
            args.port,
            faults,
            args.api_key,
            prompt_tokens_details=not args.no_prompt_tokens_details,
        )
    except OSError as exc:
        print(
            f"tmesh-cli simulate: error: cannot listen on {args.host}:{args.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_RUN_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    key = "required" if args.api_key else "none"
    print(
        f"tmesh simulated engine: profile {args.profile}, model {config.model}, "
        f"api key {key}; listening on {handle.url}/v1 (Ctrl-C to stop)",
        flush=True,
    )
    async with handle:
        await stop.wait()
    print("tmesh simulated engine: stopped", flush=True)
    return EXIT_OK
