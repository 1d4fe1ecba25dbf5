"""Fault injection for the simulated engine: which fault a request meets, and how it is counted.

A benchmark that runs for hours against production endpoints meets every fault a server can produce,
so the simulator must be able to produce them on demand: at random (seeded, so a failing run can be
replayed) for soak tests, and forced per request with the `X-Sim-Fault` header so a test can pin one
fault to one request. Deciding the fault is pure and lives here; acting it out on the wire lives in
`sim.server`.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger("tmesh.sim.server")

FAULT_HEADER = "X-Sim-Fault"
ERROR_BODIES = ("json", "text", "html", "mixed")
# Faults that happen inside a 200 stream fire after this many tokens unless told otherwise: late
# enough that the client has seen a real token, early enough to fire in any response.
DEFAULT_IN_STREAM_AFTER = 1


@dataclass(frozen=True)
class FaultConfig:
    """Rates (probability per generation request) and shapes of the injected faults; all off.

    Only the generation endpoints (/v1/completions, /v1/chat/completions) meet faults: discovery,
    /tokenize and /metrics stay reliable so a fault test exercises the request path it targets.

    The rates are drawn from one seeded generator in arrival order, one draw per request, so their
    sum must not exceed 1. `retry_after=None` sends a 429 without a Retry-After header.
    `stall_after=0` stalls before the response headers (the client sees no byte at all).
    """

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    error_body: str = "json"
    rate_429: float = 0.0
    retry_after: float | None = 1.0
    cut_rate: float = 0.0
    cut_after: int = 5
    stall_rate: float = 0.0
    stall_seconds: float = 3.0
    stall_after: int = 0
    malformed_rate: float = 0.0
    error_in_stream_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        rates = self.rates()
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0 or math.isnan(rate):
                raise ValueError(f"fault rate {name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        if not self.error_statuses:
            raise ValueError("fault error statuses must not be empty")
        for status in self.error_statuses:
            if not 400 <= status <= 599 or status == 429:
                raise ValueError(f"fault error status must be a 4xx/5xx other than 429: {status}")
        if self.error_body not in ERROR_BODIES:
            raise ValueError(f"fault error body must be one of {', '.join(ERROR_BODIES)}")
        if self.retry_after is not None and not self.retry_after >= 0:
            raise ValueError("fault Retry-After must be >= 0 seconds")
        if self.cut_after < 0 or self.stall_after < 0:
            raise ValueError("fault token positions must be >= 0")
        if not self.stall_seconds >= 0:
            raise ValueError("fault stall seconds must be >= 0")

    def rates(self) -> dict[str, float]:
        """Rate per fault kind, in the order the single random draw is partitioned."""
        return {
            "error": self.error_rate,
            "429": self.rate_429,
            "cut": self.cut_rate,
            "stall": self.stall_rate,
            "malformed": self.malformed_rate,
            "error-in-stream": self.error_in_stream_rate,
        }

    @property
    def enabled(self) -> bool:
        return any(self.rates().values())


@dataclass(frozen=True)
class Fault:
    """One fault to act out on one request.

    `name` is the label it is counted under (the header vocabulary: "500", "429", "cut", ...).
    `after_tokens` is where an in-stream fault fires; `body` is the error body style for status
    faults ("json", "text" or "html").
    """

    name: str
    status: int = 200
    body: str = "json"
    retry_after: float | None = None
    after_tokens: int = 0
    seconds: float = 0.0

    @property
    def before_response(self) -> bool:
        """True when the fault replaces the response instead of happening inside it."""
        return self.status != 200 or (self.name == "stall" and self.after_tokens == 0)


def _int_arg(value: str, what: str) -> int:
    if not value.isdigit():
        raise ValueError(f"{FAULT_HEADER}: {what} must be a non-negative integer, got {value!r}")
    return int(value)


def _float_arg(value: str, what: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number >= 0 or math.isinf(number):
        raise ValueError(f"{FAULT_HEADER}: {what} must be a non-negative number, got {value!r}")
    return number


def parse_fault_header(value: str, config: FaultConfig) -> Fault | None:
    """The fault a `X-Sim-Fault` header asks for; None for `none`. Raises ValueError if unknown.

    Vocabulary: `<status>[:json|text|html]` (a 4xx/5xx error), `429[:<seconds>|none]`,
    `cut[:<k>]`, `stall[:<seconds>[:<k>]]`, `malformed[:<k>]`, `error-in-stream[:<k>]`, `none`;
    `k` is the number of tokens sent before the fault fires; missing arguments come from `config`.
    """
    name, *args = value.strip().lower().split(":")
    if len(args) > (2 if name == "stall" else 1):
        raise ValueError(f"{FAULT_HEADER}: too many arguments in {value!r}")
    arg = args[0] if args else None
    if name == "none":
        return None
    if name == "429":
        if arg is None:
            return Fault("429", status=429, retry_after=config.retry_after)
        retry = None if arg == "none" else _float_arg(arg, "Retry-After")
        return Fault("429", status=429, retry_after=retry)
    if name.isdigit():
        status = int(name)
        if not 400 <= status <= 599:
            raise ValueError(f"{FAULT_HEADER}: status must be 4xx or 5xx, got {status}")
        body = arg or "json"
        if body not in ERROR_BODIES[:3]:
            raise ValueError(f"{FAULT_HEADER}: error body must be json, text or html")
        return Fault(name, status=status, body=body)
    if name == "cut":
        k = config.cut_after if arg is None else _int_arg(arg, "cut position")
        return Fault("cut", after_tokens=k)
    if name == "stall":
        seconds = config.stall_seconds if arg is None else _float_arg(arg, "stall seconds")
        k = _int_arg(args[1], "stall position") if len(args) == 2 else 0
        return Fault("stall", seconds=seconds, after_tokens=k)
    if name in ("malformed", "error-in-stream"):
        k = DEFAULT_IN_STREAM_AFTER if arg is None else _int_arg(arg, f"{name} position")
        return Fault(name, after_tokens=k)
    raise ValueError(f"{FAULT_HEADER}: unknown fault {value!r}")


def _random_fault(kind: str, config: FaultConfig, rng: random.Random) -> Fault:
    """The fault of `kind` as the configuration shapes it (status and body drawn from `rng`)."""
    if kind == "error":
        status = rng.choice(config.error_statuses)
        body = rng.choice(ERROR_BODIES[:3]) if config.error_body == "mixed" else config.error_body
        return Fault(str(status), status=status, body=body)
    if kind == "429":
        return Fault("429", status=429, retry_after=config.retry_after)
    if kind == "cut":
        return Fault("cut", after_tokens=config.cut_after)
    if kind == "stall":
        return Fault("stall", seconds=config.stall_seconds, after_tokens=config.stall_after)
    return Fault(kind, after_tokens=DEFAULT_IN_STREAM_AFTER)


class FaultInjector:
    """Chooses each request's fault, counts it and logs it.

    Counts are kept both as a plain dict (for the stop-time log line and tests) and as a
    Prometheus counter `tmesh_sim_faults_injected_total{fault=...}` that the server appends to
    `/metrics`, so a benchmark's scrape sees what the server did on purpose.
    """

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)
        self._rates = self.config.rates()
        self.counts: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self._counter = Counter(
            "tmesh_sim_faults_injected",
            "Faults the simulated engine injected on purpose, by fault",
            ["fault"],
            registry=self.registry,
        )

    def choose(self, header: str | None) -> Fault | None:
        """The fault for the next request: the header's when given, else a seeded random draw.

        Raises ValueError for an unknown header value. A forced fault does not consume a random
        draw, so forcing faults in some requests does not shift the random sequence of others.
        """
        if header is not None:
            return parse_fault_header(header, self.config)
        if not self.config.enabled:
            return None
        draw = self._rng.random()
        for kind, rate in self._rates.items():
            if draw < rate:
                return _random_fault(kind, self.config, self._rng)
            draw -= rate
        return None

    def record(self, fault: Fault, where: str) -> None:
        """Count and log a fault at the moment it is acted out (a fault that a client disconnect
        pre-empts is not counted)."""
        self.counts[fault.name] = self.counts.get(fault.name, 0) + 1
        self._counter.labels(fault=fault.name).inc()
        log.info("injected fault %s on %s", describe_fault(fault), where)

    def summary(self) -> str:
        """One line with the count of every fault injected so far."""
        if not self.counts:
            return "no faults injected"
        counts = ", ".join(f"{name}={count}" for name, count in sorted(self.counts.items()))
        return f"faults injected: {counts}"


def describe_fault(fault: Fault) -> str:
    """Human-readable one-liner, e.g. `503 (html body)`, `cut after 5 tokens`."""
    if fault.status == 429:
        retry = (
            "no Retry-After" if fault.retry_after is None else f"Retry-After {fault.retry_after:g}"
        )
        return f"429 ({retry})"
    if fault.status != 200:
        return f"{fault.status} ({fault.body} body)"
    if fault.name == "stall":
        return f"stall {fault.seconds:g}s after {fault.after_tokens} tokens"
    return f"{fault.name} after {fault.after_tokens} tokens"
