"""When traffic is due: open-loop arrival times and a session's think times, as pure functions.

An open loop sends each request at a time fixed in advance, whatever the server does, so a slow
server meets the same offered load as a fast one (a closed loop would slow down with it and hide
the queue). Times are offsets in seconds from the start of the run, accumulated from seeded gaps
into one absolute schedule: a sender that sleeps until each time never drifts, however late one
request went out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import TypeVar

from tmesh.results.records import ARRIVAL_KINDS, ArrivalKind, ThinkTimeDist

T = TypeVar("T")

LOGNORMAL_SIGMA = 1.0
"""Spread of log-normal think times: a median of 0.61 of the mean and a long tail (5 % of the
pauses are longer than 3.1 times the mean), like people reading an answer before replying."""


@dataclass(frozen=True)
class Arrival:
    """An arrival process: `kind`, and the gamma `shape` (1 is Poisson; CV = 1/sqrt(shape))."""

    kind: ArrivalKind
    shape: float = 1.0


def parse_arrival(text: str) -> Arrival:
    """`poisson`, `constant` or `gamma:SHAPE` (SHAPE > 0); ValueError names what is wrong."""
    kind, _, shape = text.strip().partition(":")
    if kind not in ARRIVAL_KINDS:
        plain = [name for name in ARRIVAL_KINDS if name != "gamma"]
        raise ValueError(f"one of {', '.join(plain)} or gamma:SHAPE")
    if kind != "gamma":
        if shape:
            raise ValueError(f"{kind} without a shape")
        return Arrival(kind)
    try:
        value = float(shape)
    except ValueError:
        raise ValueError("gamma:SHAPE with a number for SHAPE (gamma:2, say)") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError("gamma:SHAPE with SHAPE > 0")
    return Arrival("gamma", value)


def gaps(arrival: Arrival, rate: float, rng: random.Random) -> Iterator[float]:
    """Endless seconds between consecutive arrivals, `1 / rate` on average."""
    mean = 1.0 / rate
    while True:
        if arrival.kind == "constant":
            yield mean
        elif arrival.kind == "poisson":
            yield rng.expovariate(rate)
        else:
            yield rng.gammavariate(arrival.shape, mean / arrival.shape)


def schedule(arrival: Arrival, rate: float, seed: int, salt: str = "requests") -> Iterator[float]:
    """Endless arrival times (seconds from the start), the same for a given seed and salt."""
    rng = random.Random(f"tmesh-arrivals:{salt}:{seed}")
    return accumulate(gaps(arrival, rate, rng))


def share(times: Iterable[T], worker: int, workers: int) -> Iterator[T]:
    """Worker `worker`'s part of one schedule: arrivals `worker`, `worker + workers`, ….

    Every worker draws the whole schedule and keeps its slice, so N workers together send
    exactly the process one would have (rate splitting by N independent streams would not:
    N constant streams started together arrive in bursts of N).
    """
    return islice(times, worker, None, workers)


def think_time(dist: ThinkTimeDist, mean: float, rng: random.Random) -> float:
    """One pause in seconds, `mean` on average (0 when `mean` is 0)."""
    if mean <= 0 or dist == "constant":
        return max(mean, 0.0)
    if dist == "exp":
        return rng.expovariate(1.0 / mean)
    mu = math.log(mean) - LOGNORMAL_SIGMA**2 / 2
    return rng.lognormvariate(mu, LOGNORMAL_SIGMA)
