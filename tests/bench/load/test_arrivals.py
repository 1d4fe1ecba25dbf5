"""Arrival schedules and think times: pure functions, checked without a network."""

from __future__ import annotations

import random
import statistics
from itertools import islice, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmesh.bench.load.arrivals import (
    Arrival,
    parse_arrival,
    schedule,
    share,
    think_time,
)
from tmesh.fieldspec import parsed_by

DRAWS = 20_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("poisson", Arrival("poisson")),
        ("constant", Arrival("constant")),
        ("gamma:2", Arrival("gamma", 2.0)),
        (" gamma:0.25 ", Arrival("gamma", 0.25)),
    ],
)
def test_arrival_kinds_parse(text: str, expected: Arrival) -> None:
    assert parse_arrival(text) == expected
    assert parsed_by(parse_arrival)(text) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bursty", "one of poisson, constant or gamma:SHAPE"),
        ("gamma", "a number for SHAPE"),
        ("gamma:x", "a number for SHAPE"),
        ("gamma:0", "SHAPE > 0"),
        ("gamma:inf", "SHAPE > 0"),
        ("poisson:2", "poisson without a shape"),
    ],
)
def test_bad_arrivals_say_what_they_must_be(text: str, says: str) -> None:
    problem = parsed_by(parse_arrival)(text)
    assert problem is not None and says in problem


@pytest.mark.parametrize("arrival", ["poisson", "constant", "gamma:0.5", "gamma:4"])
@pytest.mark.parametrize("rate", [0.5, 30.0, 2000.0])
def test_schedules_keep_their_mean_rate(arrival: str, rate: float) -> None:
    times = list(islice(schedule(parse_arrival(arrival), rate, seed=3), DRAWS))
    achieved = DRAWS / times[-1]
    assert achieved == pytest.approx(rate, rel=0.04)
    assert all(b > a for a, b in pairwise(times)), "an absolute schedule only moves forward"


@pytest.mark.parametrize(("arrival", "cv"), [("poisson", 1.0), ("gamma:4", 0.5), ("constant", 0)])
def test_gaps_have_the_spread_of_their_process(arrival: str, cv: float) -> None:
    times = [0.0, *islice(schedule(parse_arrival(arrival), 10.0, seed=1), DRAWS)]
    gaps = [b - a for a, b in pairwise(times)]
    assert statistics.pstdev(gaps) / statistics.fmean(gaps) == pytest.approx(cv, abs=0.03)


def test_a_seed_fixes_the_schedule() -> None:
    first = list(islice(schedule(Arrival("poisson"), 5.0, seed=7), 50))
    again = list(islice(schedule(Arrival("poisson"), 5.0, seed=7), 50))
    other = list(islice(schedule(Arrival("poisson"), 5.0, seed=8), 50))
    sessions = list(islice(schedule(Arrival("poisson"), 5.0, seed=7, salt="sessions"), 50))
    assert first == again
    assert first != other
    assert first != sessions


@settings(max_examples=30, deadline=None)
@given(workers=st.integers(1, 6), seed=st.integers(0, 1000), kind=st.sampled_from(["poisson",
       "constant", "gamma:2"]))  # fmt: skip
def test_workers_together_send_exactly_the_one_schedule(workers: int, seed: int, kind: str) -> None:
    """Each worker keeps every n-th arrival of the same schedule: their union is that schedule,
    not n independent streams (constant streams started together would arrive in bursts)."""
    whole = list(islice(schedule(parse_arrival(kind), 20.0, seed), 60 * workers))
    parts = [
        list(islice(share(schedule(parse_arrival(kind), 20.0, seed), w, workers), 60))
        for w in range(workers)
    ]
    assert sorted(t for part in parts for t in part) == whole


@pytest.mark.parametrize("dist", ["exp", "lognormal", "constant"])
def test_think_times_average_their_mean(dist: str) -> None:
    rng = random.Random(0)
    draws = [think_time(dist, 10.0, rng) for _ in range(DRAWS)]  # type: ignore[arg-type]
    assert statistics.fmean(draws) == pytest.approx(10.0, rel=0.05)
    assert min(draws) >= 0


def test_lognormal_think_times_have_a_long_tail() -> None:
    rng = random.Random(0)
    draws = sorted(think_time("lognormal", 10.0, rng) for _ in range(DRAWS))
    assert draws[DRAWS // 2] == pytest.approx(6.07, rel=0.05)
    assert draws[int(0.95 * DRAWS)] > 30


def test_no_think_time_is_no_pause() -> None:
    rng = random.Random(0)
    assert {think_time(dist, 0.0, rng) for dist in ("exp", "lognormal", "constant")} == {0.0}
