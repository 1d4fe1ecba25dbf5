"""Goodput: parsing an SLO, and which requests meet it."""

from __future__ import annotations

import re

import pytest
from factories import request

from tmesh.bench.measure.goodput import Slo, parse_slo


def test_an_slo_parses_any_subset_of_limits() -> None:
    assert parse_slo("ttft=2,itl=0.05,e2e=30") == Slo(2.0, 0.05, 30.0)
    assert parse_slo(" TTFT = 1.5 ") == Slo(ttft=1.5)
    assert parse_slo("e2e=10,").limits() == {"e2e": 10.0}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "at least one limit"),
        ("latency=2", "keys: ttft, itl, e2e"),
        ("ttft", "keys: ttft, itl, e2e"),
        ("ttft=fast", "a number of seconds for ttft"),
        ("ttft=-1", "a positive number"),
        ("ttft=1,ttft=2", "ttft is given twice"),
    ],
)
def test_bad_slos_say_what_they_must_be(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_slo(text)


def test_a_request_is_good_when_it_meets_every_limit() -> None:
    slo = Slo(ttft=1.0, itl=0.1, e2e=5.0)
    fast = request(0.0, ttft=0.5, decode=0.9, completion_tokens=10)
    slow_start = request(0.0, ttft=1.5, decode=0.9, completion_tokens=10)
    slow_tokens = request(0.0, ttft=0.5, decode=9.0, completion_tokens=10)
    failed = request(0.0, ttft=0.5, completion_tokens=10, error="http_5xx")
    assert slo.met_by(fast)
    assert not slo.met_by(slow_start)
    assert not slo.met_by(slow_tokens)
    assert not slo.met_by(failed)


def test_latency_counts_from_the_intended_send_when_there_was_one() -> None:
    """A request the client sent 2 s late kept its user waiting those 2 s too."""
    slo = Slo(ttft=1.0)
    on_time = request(10.0, ttft=0.5, t_intended=10.0)
    late = request(12.0, ttft=0.5, t_intended=10.0)
    assert late.ttft == pytest.approx(0.5)
    assert late.ttft_from_intended == pytest.approx(2.5)
    assert late.lateness == pytest.approx(2.0)
    assert slo.met_by(on_time)
    assert not slo.met_by(late)


def test_a_one_token_answer_has_no_gap_to_judge() -> None:
    single = request(0.0, ttft=0.2, completion_tokens=1)
    assert single.itl is None
    assert Slo(itl=0.001).met_by(single)
