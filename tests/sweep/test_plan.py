"""A sweep's plan: one knob with several values, single values fixed for every point, and each
point's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tmesh.bench.options import BenchmarkOptions
from tmesh.sweep.options import SweepOptions
from tmesh.sweep.plan import (
    SweepError,
    SweepPlan,
    check_plan,
    contexts_for_ratio,
    point_contexts,
    point_options,
    sweep_plan,
)


def test_the_default_sweep_is_the_working_set_ratio() -> None:
    plan = sweep_plan(SweepOptions())
    assert plan == SweepPlan("working_set_ratio", (0.5, 1.0, 2.0, 4.0, 8.0))


def test_a_single_value_is_a_setting_for_every_point() -> None:
    plan = sweep_plan(SweepOptions(max_inflight="4"))
    assert plan.knob == "working_set_ratio" and plan.fixed == (("max_inflight", 4.0),)
    plan = sweep_plan(SweepOptions(working_set_ratio="2", max_inflight="1,4,16"))
    assert (plan.knob, plan.values) == ("max_inflight", (1.0, 4.0, 16.0))
    assert plan.ratio(1) == 2.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (SweepOptions(working_set_ratio="1,2", max_inflight="1,2"), "varies one knob"),
        (SweepOptions(working_set_ratio="1,x"), "'x' is not a number"),
        (SweepOptions(working_set_ratio="1,-2"), "positive numbers"),
        (SweepOptions(max_inflight="1,2.5"), "whole numbers >= 1"),
        (SweepOptions(max_inflight="2,2"), "lists a value twice"),
    ],
)
def test_bad_lists_are_one_line(options: SweepOptions, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        sweep_plan(options)


def test_contexts_follow_the_ratio_and_the_capacity() -> None:
    assert contexts_for_ratio(0.5, 32768, 1024) == 16
    assert contexts_for_ratio(0.001, 32768, 1024) == 1
    base = BenchmarkOptions(input_length=1024)
    plan = sweep_plan(SweepOptions(working_set_ratio="0.5,2"))
    assert point_contexts(plan, base, 32768) == [16, 64]
    with pytest.raises(SweepError, match="pass --cache-tokens"):
        point_contexts(plan, base, None)
    inflight = sweep_plan(SweepOptions(max_inflight="1,2"))
    with pytest.raises(SweepError, match="--num-contexts"):
        check_plan(inflight, base)
    assert point_contexts(inflight, BenchmarkOptions(num_contexts=5), None) == [5, 5]


def test_a_sessions_sweep_varies_users_and_runs_for_a_duration() -> None:
    sessions = BenchmarkOptions(workload="sessions")
    with pytest.raises(SweepError, match="a sessions sweep varies --users"):
        check_plan(sweep_plan(SweepOptions()), sessions)
    users = sweep_plan(SweepOptions(users="1,4"))
    with pytest.raises(SweepError, match="--duration"):
        check_plan(users, sessions)
    timed = BenchmarkOptions(workload="sessions", duration=10.0)
    check_plan(users, timed)
    assert point_contexts(users, timed, None) == [0, 0]
    point = point_options(users, timed, 3, [0, 0], 1, Path("out"))
    assert point.users == 4 and point.max_requests is None and point.max_inflight is None


def test_point_options(tmp_path: Path) -> None:
    base = BenchmarkOptions(input_length=1024, seed=7, report=True)
    plan = sweep_plan(SweepOptions(working_set_ratio="0.5,2"))
    contexts = point_contexts(plan, base, 32768)
    second = point_options(plan, base, 3, contexts, 1, tmp_path)
    assert second.num_contexts == 64 and second.max_requests == 192
    assert second.max_inflight == 16 // 3, "the smallest point's in-flight limit, for all"
    assert second.seed == 8 and second.output_dir == tmp_path / "02-working-set-ratio-2"
    assert not second.report
    timed = point_options(plan, BenchmarkOptions(duration=30.0), 3, contexts, 0, tmp_path)
    assert timed.max_requests is None
    inflight = sweep_plan(SweepOptions(max_inflight="1,8"))
    per_point = point_options(inflight, BenchmarkOptions(num_contexts=4), 2, [4, 4], 1, tmp_path)
    assert per_point.max_inflight == 8 and per_point.max_requests == 8


def test_a_request_rate_sweep_leaves_the_cap_to_the_open_loop(tmp_path: Path) -> None:
    rates = sweep_plan(SweepOptions(request_rate="2.5,10"))
    base = BenchmarkOptions(num_contexts=6)
    check_plan(rates, base)
    point = point_options(rates, base, 3, point_contexts(rates, base, None), 0, tmp_path)
    assert point.request_rate == 2.5 and point.max_inflight is None and point.max_requests == 18
