"""The points of a sweep: which knob, its values, and each point's benchmark options (pure).

Every point is an ordinary benchmark run in a folder of its own. Points differ in the knob and in
their seed (so no point's contexts are ever in the cache from an earlier one, even on a server
whose cache cannot be reset); everything else is the same for all of them, the number of
requests in flight too unless it is the knob (an open loop's cap is sized from its rate). A point
sends `passes` passes over its contexts, the first of them a warm-up, unless `--duration` or
`--max-requests` sets its length (sessions always run for a duration).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tmesh.bench.options import BenchmarkOptions
from tmesh.results.sweeps import Knob
from tmesh.sweep.options import DEFAULT_RATIOS, SweepOptions

MAX_POINTS = 50
WHOLE: tuple[Knob, ...] = ("max_inflight", "users")
"""Knobs that count things; the others are rates and ratios."""


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message is one line naming the flag."""


@dataclass(frozen=True)
class SweepPlan:
    """The knob and its values; `fixed` holds the knob flags given one value, which set that
    option for every point (`--working-set-ratio 2 --max-inflight 1,4,16`)."""

    knob: Knob
    values: tuple[float, ...]
    fixed: tuple[tuple[Knob, float], ...] = ()

    def ratio(self, index: int) -> float | None:
        """The working-set ratio of point `index`, if the sweep sets one."""
        if self.knob == "working_set_ratio":
            return self.values[index]
        return dict(self.fixed).get("working_set_ratio")


def sweep_plan(options: SweepOptions) -> SweepPlan:
    """The knob given several values (the working-set ratio when none is)."""
    lists: tuple[tuple[Knob, str | None], ...] = (
        ("working_set_ratio", options.working_set_ratio),
        ("max_inflight", options.max_inflight),
        ("request_rate", options.request_rate),
        ("users", options.users),
    )
    given = [(knob, _values(knob, text)) for knob, text in lists if text is not None]
    varied = [(knob, values) for knob, values in given if len(values) > 1]
    if len(varied) > 1:
        flags = " and ".join(_flag(knob) for knob, _ in varied)
        raise SweepError(f"a sweep varies one knob: give several values to {flags} only")
    if not varied:
        ratios = next((v for k, v in given if k == "working_set_ratio"), None)
        varied = [("working_set_ratio", ratios or _values("working_set_ratio", DEFAULT_RATIOS))]
    knob, values = varied[0]
    fixed = tuple((k, v[0]) for k, v in given if k != knob)
    return SweepPlan(knob, values, fixed)


def _values(knob: Knob, text: str) -> tuple[float, ...]:
    whole = knob in WHOLE
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise SweepError(f"{_flag(knob)}: {item.strip()!r} is not a number") from None
        if not value > 0 or value == float("inf") or (whole and value != int(value)):
            kind = "whole numbers >= 1" if whole else "positive numbers"
            raise SweepError(f"{_flag(knob)} takes {kind}, not {item.strip()!r}")
        values.append(value)
    if len(set(values)) != len(values):
        raise SweepError(f"{_flag(knob)} lists a value twice")
    if len(values) > MAX_POINTS:
        raise SweepError(f"{_flag(knob)} lists {len(values)} values; at most {MAX_POINTS}")
    return tuple(values)


def _flag(knob: Knob) -> str:
    return "--" + knob.replace("_", "-")


def contexts_for_ratio(ratio: float, capacity: int, input_length: int) -> int:
    """Contexts whose prompts add up to `ratio` times the GPU KV capacity (at least one)."""
    return max(1, round(ratio * capacity / input_length))


def check_plan(plan: SweepPlan, base: BenchmarkOptions) -> None:
    """What makes a plan impossible whatever the server says (before any network work)."""
    timed = base.duration is not None or base.max_requests is not None
    if base.workload == "sessions":
        if plan.ratio(0) is not None:
            raise SweepError(
                "--working-set-ratio sizes the contexts workload: a sessions sweep varies "
                "--users, --max-inflight or --request-rate"
            )
        if not timed:
            raise SweepError(f"{_flag(plan.knob)}: give each point a --duration (sessions)")
    elif plan.ratio(0) is None and base.num_contexts is None and not timed:
        raise SweepError(
            f"{_flag(plan.knob)}: give each point --num-contexts (it then sends --passes "
            "passes over them), a --working-set-ratio, or a length (--duration, --max-requests)"
        )


def point_contexts(plan: SweepPlan, base: BenchmarkOptions, capacity: int | None) -> list[int]:
    """Each point's number of contexts (0: sized by the benchmark, as for a single run, or a
    sessions workload); `capacity` is the GPU KV capacity a working-set ratio needs."""
    ratios = [plan.ratio(index) for index in range(len(plan.values))]
    if ratios[0] is None:
        return [base.num_contexts or 0] * len(plan.values)
    if capacity is None:
        raise SweepError(
            "--working-set-ratio needs the server's GPU KV capacity, which its /metrics do not "
            "report: pass --cache-tokens"
        )
    return [contexts_for_ratio(r or 0.0, capacity, base.input_length) for r in ratios]


def point_options(
    plan: SweepPlan,
    base: BenchmarkOptions,
    passes: int,
    contexts: list[int],
    index: int,
    folder: Path,
) -> BenchmarkOptions:
    """The benchmark options of point `index`."""
    count = contexts[index] or None
    settings = {**dict(plan.fixed), plan.knob: plan.values[index]}
    inflight = settings.get("max_inflight")
    if inflight is None and min(contexts) and "request_rate" not in settings:
        inflight = max(1, min(contexts) // 3)  # the smallest point's default, for every point
    timed = base.duration is not None or base.max_requests is not None
    return replace(
        base,
        num_contexts=count,
        max_inflight=int(inflight) if inflight else None,
        request_rate=settings.get("request_rate", base.request_rate),
        users=int(settings.get("users", base.users)),
        max_requests=base.max_requests if timed or count is None else passes * count,
        seed=base.seed + index,
        output_dir=folder / point_name(plan, index),
        report=False,
        live=False,
        json=False,
    )


def point_name(plan: SweepPlan, index: int) -> str:
    return f"{index + 1:02d}-{plan.knob.replace('_', '-')}-{plan.values[index]:g}"
